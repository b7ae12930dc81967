"""Adaptive Integrated Gradients (saliscope's default) against Captum's IG at its defaults, on many photos.

    PYTHONPATH=src python bench/ig_adaptive.py [--repeats 3] [--images 25] [--reference-steps 1024]
                                               [--references bench/results/ig-references-cpu.pt]

For every image — skimage's four sample photos, 15 more skimage images and crops of them — and its
predicted class, with both libraries at their defaults (zero baseline, Captum: 50 Gauss–Legendre steps in
one batch):

- the relative completeness gap ``|sum(attr) - (f(x) - f(0))| / |f(x) - f(0)|``;
- the distance to the map's own converged limit: ``||map - ref|| / ||ref||`` with ``ref`` a 1,024-node
  Gauss–Legendre IG (saliscope's fixed rule, which matches Captum's to float rounding);
- wall time (and process CPU time) of ``IntegratedGradients(model).explain(x, c)`` and Captum's
  ``IntegratedGradients(model).attribute(x, target=c)``, interleaved round-robin image by image, median of
  ``--repeats``.

The targets: the gap within 5% on every image, the adaptive map no farther from ``ref`` than Captum's, and
at most half of Captum's wall time. Writes ``bench/results/ig-adaptive-<device>[-<max-evals>].{md,json}``.

The references take most of the run (1,024 gradient passes per image, ~50 s each on a 2-core CPU). They depend
only on the model, the images and the fixed rule, so ``--references FILE`` keeps them: read when the file holds
every image's at the same step count, else computed and written there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RESULTS, cpu_seconds, environment, loadavg, pick_device
from PIL import Image


def images(limit: int) -> list[tuple[str, Image.Image]]:
    """Four sample photos, 15 more skimage images and 6 crops: 25 in all (the first ``limit``)."""
    from skimage import data

    def rgb(a: np.ndarray) -> Image.Image:
        a = np.asarray(a)
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        return Image.fromarray(a[..., :3].astype(np.uint8))

    found = [(name, rgb(getattr(data, name)())) for name in ("chelsea", "coffee", "astronaut", "rocket")]
    for name in (
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "coins",
        "camera",
        "moon",
        "page",
        "clock",
        "colorwheel",
        "logo",
        "grass",
        "gravel",
        "brick",
        "cell",
        "text",
    ):
        found.append((name, rgb(getattr(data, name)())))
    crops = {
        "astronaut-face": ("astronaut", (150, 20, 330, 200)),
        "astronaut-flag": ("astronaut", (0, 0, 200, 200)),
        "coffee-cup": ("coffee", (150, 60, 450, 360)),
        "chelsea-face": ("chelsea", (120, 20, 330, 230)),
        "rocket-top": ("rocket", (200, 0, 460, 260)),
        "retina-disc": ("retina", (700, 400, 1200, 900)),
    }
    whole = dict(found)
    for name, (source, box) in crops.items():
        found.append((name, whole[source].crop(box)))
    return found[:limit]


def relative(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).flatten().norm() / ref.flatten().norm())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=25)
    ap.add_argument("--reference-steps", type=int, default=1024)
    ap.add_argument("--references", type=Path, default=None, help="keep the reference maps in this file")
    ap.add_argument("--max-evals", type=int, default=None, help="the adaptive rule's budget (default: its own)")
    args = ap.parse_args()
    from captum.attr import IntegratedGradients as CaptumIG

    import saliscope as ss

    device = pick_device(args.device)
    model = ss.load_model(device=str(device))
    ours = ss.IntegratedGradients(model, max_evals=args.max_evals)  # adaptive, zero baseline, tolerance 5%
    reference = ss.IntegratedGradients(model, n_steps=args.reference_steps)
    theirs = CaptumIG(model)
    rows: list[dict[str, Any]] = []
    print(f"load {loadavg()}; {environment(device)}", flush=True)
    kept: dict[str, torch.Tensor] = {}
    if args.references is not None and args.references.exists():
        stored = torch.load(args.references)
        kept = stored["maps"] if stored.get("steps") == args.reference_steps else {}
    for name, photo in images(args.images):
        x = model.preprocess(photo).to(device)
        with torch.no_grad():
            logits = model(x)
        c = int(logits.argmax())
        change = float(logits[0, c] - model(torch.zeros_like(x))[0, c].detach())
        if name not in kept:
            kept[name] = reference.explain(x, c).attributions.cpu()
            if args.references is not None:
                torch.save({"steps": args.reference_steps, "maps": kept}, args.references)
        ref = kept[name].to(device)
        runs: dict[str, list[float]] = {"ours": [], "captum": []}
        cpu: dict[str, list[float]] = {"ours": [], "captum": []}
        maps: dict[str, torch.Tensor] = {}
        extras: dict[str, Any] = {}
        for r in range(args.repeats):
            for who in ("ours", "captum") if r % 2 == 0 else ("captum", "ours"):
                c0, t0 = cpu_seconds(), time.perf_counter()
                if who == "ours":
                    e = ours.explain(x, c)
                    maps[who] = e.attributions
                    extras = {
                        "evaluations": int(e.extras["evaluations"][0]),
                        "converged": bool(e.extras["converged"][0]),
                    }
                else:
                    maps[who] = theirs.attribute(x, target=c).detach()
                runs[who].append(time.perf_counter() - t0)
                cpu[who].append(cpu_seconds() - c0)
        row = {"image": name, "class": c, "score_change": change, **extras}
        for who in ("ours", "captum"):
            row[f"{who}_gap"] = abs(float(maps[who].sum()) - change) / abs(change)
            row[f"{who}_l2"] = relative(maps[who], ref)
            row[f"{who}_s"] = statistics.median(runs[who])
            row[f"{who}_cpu_s"] = statistics.median(cpu[who])
        row["time_ratio"] = row["ours_s"] / row["captum_s"]
        row["cpu_ratio"] = row["ours_cpu_s"] / row["captum_cpu_s"]
        rows.append(row)
        print(
            f"{name:22} evals {row.get('evaluations', 0):3d}  gap {row['ours_gap']:6.2%} vs {row['captum_gap']:6.2%}  "
            f"L2 {row['ours_l2']:.4f} vs {row['captum_l2']:.4f}  time {row['ours_s']:.2f} vs {row['captum_s']:.2f} s "
            f"({row['time_ratio']:.2f}x, cpu {row['cpu_ratio']:.2f}x)  load {loadavg()}",
            flush=True,
        )
    summary = {
        "images": len(rows),
        "max_gap_ours": max(r["ours_gap"] for r in rows),
        "max_gap_captum": max(r["captum_gap"] for r in rows),
        "l2_not_farther": sum(r["ours_l2"] <= r["captum_l2"] for r in rows),
        "median_time_ratio": statistics.median(r["time_ratio"] for r in rows),
        "max_time_ratio": max(r["time_ratio"] for r in rows),
        "median_cpu_ratio": statistics.median(r["cpu_ratio"] for r in rows),
        "median_evaluations": statistics.median(r["evaluations"] for r in rows),
        "max_evaluations": max(r["evaluations"] for r in rows),
    }
    lines = [
        f"Adaptive IG (max_evals {ours.max_evals}) vs Captum IG-50 default; {args.repeats} interleaved repeats "
        "per image; "
        f"reference GL-{args.reference_steps}; {environment(device)}",
        "",
        "| image | class | evals | gap ours | gap Captum | L2 to ref ours | L2 Captum | s ours | s Captum | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['image']} | {r['class']} | {r['evaluations']} | {r['ours_gap']:.2%} | {r['captum_gap']:.2%} | "
            f"{r['ours_l2']:.4f} | {r['captum_l2']:.4f} | {r['ours_s']:.2f} | {r['captum_s']:.2f} | "
            f"{r['time_ratio']:.2f} |"
        )
    lines += ["", json.dumps(summary)]
    RESULTS.mkdir(exist_ok=True)
    stem = f"ig-adaptive-{device.type}" + ("" if args.max_evals is None else f"-{args.max_evals}")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    print("\n".join(lines[-1:]))


if __name__ == "__main__":
    main()
