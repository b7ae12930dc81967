"""``saliscope audit``'s cost per image against the chosen method's bare batched cost, in one run.

    PYTHONPATH=src python bench/bench_audit.py                          # Grad-CAM, 64 images, 3 rounds
    PYTHONPATH=src python bench/bench_audit.py --method gradient --images 128 --device cuda

Data: ``--images`` JPEG photos of 450–640 px (random crops, flips and rescalings of scikit-image's four
sample photos), half in each of two class folders, written once to a temporary folder. The model is
``saliscope.load_model()`` (EfficientNet-Lite0, 224×224). Two variants, timed round-robin (``--repeats``
rounds after one warm-up round, alternating which goes first):

- **bare**: ``explainer.explain(x, PredictedClass())`` over the same images, already decoded and
  preprocessed in memory, in batches of ``--batch-size`` — the method's batched cost and nothing else;
- **audit**: ``run_audit(folder, model, out=<fresh folder>)`` — reading and decoding the files, the same
  method on the same batches, region masses, records on disk, checkpoints and accumulators (the
  *stream*), then the verdicts and the HTML report.

The ratio is audit stream ÷ bare, per image, medians of the rounds. The verdicts and the report are a
fixed cost per class (not per image); their time is printed separately. Results go to
``bench/results/audit-<device>.{md,json}``.

``--memory 500,5000`` instead audits generated 32×32 data sets of those sizes with an untrained TinyCNN,
each in a fresh process, and prints each process's peak resident memory: flat memory means the peaks
do not grow with the number of images.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_seconds, environment, load_model, loadavg, pick_device, sync, write_results


def make_photos(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs in ``root/a`` and ``root/b``, made from the sample photos (deterministic)."""
    from saliscope.io import sample_images

    photos = list(sample_images().values())
    rng = np.random.default_rng(seed)
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        share = rng.uniform(0.6, 1.0)
        cw, ch = int(w * share), int(h * share)
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        image = photo.crop((left, top, left + cw, top + ch))
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        side = int(rng.integers(450, 641))
        scale = side / max(image.size)
        image = image.resize(
            (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BICUBIC
        )
        folder = root / ("a" if i % 2 == 0 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:04d}.jpg", quality=90)
    return root


_MEMORY_RUN = """
import resource, sys, tempfile
from pathlib import Path
from saliscope.audit import AuditSettings, run_audit
from saliscope.datasets import make_shortcut_dataset
from saliscope.train import TinyCNN
from saliscope.models.preprocess import Preprocess
n = int(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    data = make_shortcut_dataset(Path(tmp) / "d", n_train=1, n_test=n // 2, image_size=32, seed=0)
    model = TinyCNN(2, preprocess=Preprocess(size=32, resize=32), labels=("normal", "pneumonia")).eval()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run_audit(data.test, model, out=Path(tmp) / "out", settings=AuditSettings(batch_size=64))
    print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory(sizes: list[int]) -> None:
    """Peak resident memory of an audit of ``n`` generated images, each size in a fresh process."""
    import os

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    print("| images | peak RSS before the audit (MiB) | peak RSS after (MiB) |\n|---|---|---|")
    for n in sizes:
        out = subprocess.run(
            [sys.executable, "-c", _MEMORY_RUN, str(n)], capture_output=True, text=True, env=env, check=True
        )
        before, after = (int(v) / 1024 for v in out.stdout.split()[-2:])
        print(f"| {n} | {before:.0f} | {after:.0f} |", flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--method", default="gradcam")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (after one warm-up round)")
    ap.add_argument("--memory", default=None, metavar="N1,N2", help="peak memory of audits of N1, N2 ... images")
    args = ap.parse_args(argv)
    if args.memory:
        memory([int(v) for v in args.memory.split(",")])
        return {}

    from saliscope import registry
    from saliscope.audit import AuditSettings, run_audit, scan_image_folder
    from saliscope.core.targets import PredictedClass

    device = pick_device(args.device)
    model, how = load_model(device)
    env = environment(device)
    env.update(
        model=how,
        method=args.method,
        images=args.images,
        batch_size=args.batch_size,
        repeats=args.repeats,
        load_before=loadavg(),
    )
    print("# saliscope audit benchmark")
    for k, v in env.items():
        print(f"- {k}: {v}")
    print(flush=True)

    with tempfile.TemporaryDirectory(prefix="saliscope-bench-audit-") as tmp:
        data = make_photos(Path(tmp) / "data", args.images)
        from saliscope.io import load_image

        items = scan_image_folder(data).items
        x = torch.cat([model.preprocess(load_image(item.path)) for item in items]).to(device)
        bare_explainer = registry.create(args.method, model)
        settings = AuditSettings(method=args.method, batch_size=args.batch_size)

        def bare() -> dict[str, float]:
            sync(device)
            c0, t0 = cpu_seconds(), time.perf_counter()
            for start in range(0, len(x), args.batch_size):
                bare_explainer.explain(x[start : start + args.batch_size], PredictedClass())
            sync(device)
            return {"seconds": time.perf_counter() - t0, "cpu": cpu_seconds() - c0}

        runs = 0

        def audit() -> dict[str, float]:
            nonlocal runs
            runs += 1
            sync(device)
            c0, t0 = cpu_seconds(), time.perf_counter()
            outcome = run_audit(data, model, out=Path(tmp) / f"out-{runs}", settings=settings)
            sync(device)
            total = time.perf_counter() - t0
            stream = float(outcome.summary["run"]["stream_seconds"])
            method = float(outcome.summary["run"]["method_seconds"])
            return {
                "seconds": total,
                "stream": stream,
                "rest": total - stream,
                "cpu": cpu_seconds() - c0,
                "method": method,
            }

        times: dict[str, list[dict[str, float]]] = {"bare": [], "audit": []}
        for r in range(args.repeats + 1):
            order = [("bare", bare), ("audit", audit)] if r % 2 == 0 else [("audit", audit), ("bare", bare)]
            for name, fn in order:
                result = fn()
                if r > 0:  # round 0 warms both up
                    times[name].append(result)
            if r > 0:
                print(
                    f"  round {r}/{args.repeats}: bare {times['bare'][-1]['seconds']:.2f}s, audit stream "
                    f"{times['audit'][-1]['stream']:.2f}s (+{times['audit'][-1]['rest']:.2f}s verdicts and report)"
                    f" (load {loadavg()})",
                    flush=True,
                )

    n = args.images
    bare_s = statistics.median(t["seconds"] for t in times["bare"])
    stream_s = statistics.median(t["stream"] for t in times["audit"])
    rest_s = statistics.median(t["rest"] for t in times["audit"])
    ratio = stream_s / bare_s
    # Process CPU time (all threads: the reader's decoding included) is less at the mercy of other
    # processes than wall time; the audit's covers the whole call, verdicts and report included.
    # Within one audit run: the stream against the time its own explain calls took (same batches, same
    # moment, same load) — the audit's own overhead, the least noisy of the three figures.
    inside = statistics.median(t["stream"] / t["method"] for t in times["audit"])
    bare_cpu = statistics.median(t["cpu"] for t in times["bare"])
    audit_cpu = statistics.median(t["cpu"] for t in times["audit"])
    rows = [
        ("bare `explain` (preprocessed, in memory)", bare_s, bare_s / n),
        ("audit stream (read, explain, measure, record, checkpoint)", stream_s, stream_s / n),
        ("audit verdicts + report (per class, not per image)", rest_s, None),
    ]
    md = [
        f"# audit cost: {args.method}, {n} images, batch {args.batch_size}, {env['device_name']}",
        "",
        "| variant | seconds (median) | ms per image |",
        "|---|---|---|",
    ]
    md += [f"| {name} | {s:.2f} | {'–' if per is None else f'{per * 1000:.1f}'} |" for name, s, per in rows]
    md += [
        "",
        f"**audit ÷ bare per image: {ratio:.2f}×** wall time (target ≤ 1.3×); within the audit, stream ÷ its"
        f" own explain calls: {inside:.2f}×; process CPU time, whole audit"
        f" (report included) ÷ bare: {audit_cpu / bare_cpu:.2f}× ({audit_cpu:.1f} s vs {bare_cpu:.1f} s);"
        f" load after: {loadavg()}",
        "",
    ]
    text = "\n".join(md)
    print()
    print(text)
    payload = {
        "env": env,
        "times": times,
        "bare_seconds": bare_s,
        "stream_seconds": stream_s,
        "rest_seconds": rest_s,
        "ratio": ratio,
        "stream_over_method": inside,
        "bare_cpu": bare_cpu,
        "audit_cpu": audit_cpu,
        "cpu_ratio": audit_cpu / bare_cpu,
    }
    md_path, _ = write_results(f"audit-{device.type}", text, payload)
    print(f"written {md_path}")
    return payload


if __name__ == "__main__":
    main()
