"""The audit on Ray against the local engine: images per second, Ray's overhead per image, and what an
ImageNet-sized audit would take on N workers.

    PYTHONPATH=src python bench/bench_scale.py                       # 192 photos, Grad-CAM, 1 round (~4 min on 2 CPUs)
    PYTHONPATH=src python bench/bench_scale.py --images 384 --repeats 3
    PYTHONPATH=src python bench/bench_scale.py --gpu                 # adds a Ray run with one GPU worker

Data: ``--images`` JPEG photos of 450–640 px in two class folders (``bench_audit.make_photos``). The model is
``saliscope.load_model()`` (EfficientNet-Lite0, 224×224). Variants, round-robin per round:

- **local**: ``run_audit(..., engine="local")`` with torch's default threads (all cores);
- **local, 1 thread**: the same with ``torch.set_num_threads(1)`` — what one Ray worker computes with;
- **Ray, 1 worker** and **Ray, 2 workers**: ``engine="ray"`` on a local Ray instance started once for the
  benchmark (its start-up is timed on its own); each run still starts its actor pool, which is timed as the
  latency to the first batch;
- **Ray, 1 GPU worker** with ``--gpu`` (needs CUDA).

Each variant audits the first ``--images`` photos (``--limit``) and then all ``2 × --images`` of them, each
into a fresh folder; the difference of the two wall times is the cost of ``--images`` more images, start-up
excluded: the **marginal rate**. What the shorter run took beyond that is the variant's **fixed cost**
(for Ray: starting the actor pool, each worker importing torch and unpickling the model). Ray's overhead per
image is Ray 1 worker's marginal seconds per image minus the local 1-thread run's: the same model, the same
thread count, the same batches, so what is left is reading in a separate task, moving arrays through the
object store, and the driver's merge. The decoding cost per image (``load_batch``, one thread) and the
driver's own seconds per image are measured too; with them the script prints an on-paper estimate for a
1.28 M-image audit on N workers. Results go to ``bench/results/scale-cpu.{md,json}``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, load_model, loadavg, write_results
from bench_audit import make_photos

IMAGENET = 1_281_167
ROLES = ("driver", "actors", "readers", "idle workers", "Ray daemons")


def role(p: Any) -> str:
    """What a process of the tree is doing now: the driver (this process), a Ray actor of the pool, a Ray
    task (reading), another Ray worker (idle), or one of Ray's daemons (raylet, GCS, agents)."""
    import os

    if p.pid == os.getpid():
        return "driver"
    title = " ".join(p.cmdline()[:1])
    if "MapWorker" in title:
        return "actors"
    if title.startswith("ray::") and "IDLE" not in title and "Agent" not in title:
        return "readers"
    if title.startswith("ray::IDLE") or "default_worker.py" in title:
        return "idle workers"
    return "Ray daemons"


class TreeCPU:
    """CPU seconds used by this process and every process below it (the local Ray instance's raylet, GCS and
    workers) while the ``with`` block runs, by role (:func:`role`). A thread samples the tree every 50 ms and
    gives each process's CPU time since the last sample to the role it has now; a process that ends is counted
    up to its last sample (Ray's raylet reaps its workers without adding their time to its own)."""

    def __enter__(self) -> TreeCPU:
        import threading

        self.t0 = time.time()
        self.by_role: dict[str, float] = {}
        self._last: dict[tuple[int, float], float] = {}
        self._sample(first=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def seconds(self) -> float:
        return sum(self.by_role.values())

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        import psutil

        me = psutil.Process()
        for p in [me, *me.children(recursive=True)]:
            try:
                with p.oneshot():
                    key = (p.pid, p.create_time())
                    t = p.cpu_times()
                    now = role(p)
            except psutil.Error:
                continue
            used = t.user + t.system
            # A process born during the block counts from zero; one there before, from its first sample.
            before = self._last.get(key, used if first or key[1] < self.t0 else 0.0)
            self._last[key] = used
            if not first:
                self.by_role[now] = self.by_role.get(now, 0.0) + (used - before)


def run(data: Path, model: Any, out: Path, settings: Any, **engine: Any) -> dict[str, float]:
    from saliscope.audit import run_audit

    t0 = time.perf_counter()
    with TreeCPU() as cpu_used:
        outcome = run_audit(data, model, out=out, settings=settings, **engine)
    wall = time.perf_counter() - t0
    ray = outcome.summary["run"].get("ray", {})
    return {
        "wall": wall,
        "cpu": cpu_used.seconds,
        **{f"cpu {name}": seconds for name, seconds in cpu_used.by_role.items()},
        "images": outcome.audited_now,
        "method_seconds": float(outcome.summary["run"]["method_seconds"]),
        "driver_seconds": float(ray.get("driver_seconds", float("nan"))),
    }


def decode_cost(data: Path, preprocess: Any) -> float:
    """CPU seconds per image to read, decode and preprocess (``load_batch``, this thread's CPU time)."""
    from saliscope.audit import scan_image_folder
    from saliscope.audit.dataset import load_batch

    items = scan_image_folder(data).items
    t0 = time.thread_time()
    for start in range(0, len(items), 32):
        load_batch(items[start : start + 32], preprocess)
    return (time.thread_time() - t0) / len(items)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", default="gradcam")
    ap.add_argument("--images", type=int, default=96, help="the shorter run's images (the longer run: twice as many)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=1, help="rounds (after a short warm-up of each variant)")
    ap.add_argument("--gpu", action="store_true", help="also run one Ray worker on a GPU")
    args = ap.parse_args(argv)

    import ray

    from saliscope.audit import AuditSettings

    device = torch.device("cpu")
    model, how = load_model(device)
    env = environment(device)
    env.update(model=how, method=args.method, images=args.images, batch_size=args.batch_size, load_before=loadavg())
    print("# saliscope scale-out benchmark")
    for k, v in env.items():
        print(f"- {k}: {v}")
    print(flush=True)

    t0 = time.perf_counter()
    ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    ray_init = time.perf_counter() - t0
    resources = ray.cluster_resources()
    print(f"ray.init: {ray_init:.1f} s ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs)")
    time.sleep(5)  # let the start-up settle
    with TreeCPU() as idle:
        time.sleep(10)
    idle_cpu = idle.seconds / 10
    print(f"Ray idle: {idle_cpu:.3f} CPU seconds per second (raylet, GCS, agents, idle workers)", flush=True)
    threads = torch.get_num_threads()
    n = args.images

    def settings(limit: int) -> AuditSettings:
        return AuditSettings(method=args.method, batch_size=args.batch_size, limit=limit)

    variants: dict[str, dict[str, Any]] = {
        "local": {},
        "local, 1 thread": {"threads": 1},
        "Ray, 1 worker": {"engine": "ray", "workers": 1},
        "Ray, 2 workers": {"engine": "ray", "workers": 2},
    }
    if args.gpu:
        variants["Ray, 1 GPU worker"] = {"engine": "ray", "workers": 1, "gpus_per_worker": 1}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    calls = 0

    def call(name: str, data: Path, limit: int, tmp: str) -> dict[str, float]:
        nonlocal calls
        calls += 1
        engine = dict(variants[name])
        torch.set_num_threads(engine.pop("threads", threads))
        try:
            return run(data, model, Path(tmp) / f"out-{calls}", settings(limit), **engine)
        finally:
            torch.set_num_threads(threads)

    with tempfile.TemporaryDirectory(prefix="saliscope-bench-scale-") as tmp:
        data = make_photos(Path(tmp) / "data", 2 * n)
        decode = decode_cost(data, model.preprocess)
        print(f"read + decode + preprocess: {decode * 1000:.1f} ms per image (one thread)", flush=True)
        names = list(variants)
        for name in names:  # imports, first calls, a first actor pool
            call(name, data, args.batch_size, tmp)
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                short, long = call(name, data, n, tmp), call(name, data, 2 * n, tmp)
                marginal = (long["wall"] - short["wall"]) / n
                row = {
                    "short": short["wall"],
                    "long": long["wall"],
                    "marginal": marginal,
                    "fixed": short["wall"] - n * marginal,
                    "cpu_marginal": (long["cpu"] - short["cpu"]) / n,
                    "cpu_fixed": short["cpu"] - (long["cpu"] - short["cpu"]),
                    "driver": long["driver_seconds"] / long["images"],
                    **{key: value / (2 * n) for key, value in long.items() if key.startswith("cpu ")},
                }
                results[name].append(row)
                print(
                    f"  round {r + 1}/{args.repeats}: {name}: {n} images {short['wall']:.1f} s, {2 * n} images"
                    f" {long['wall']:.1f} s → {marginal * 1000:.1f} ms per image (CPU"
                    f" {row['cpu_marginal'] * 1000:.1f} ms), fixed {row['fixed']:.1f} s (load {loadavg()})",
                    flush=True,
                )
    ray.shutdown()

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    def by_role(name: str, key: str) -> float:
        return statistics.median(r.get(f"cpu {key}", 0.0) for r in results[name])

    local = med("local", "marginal")
    rows = []
    for name in variants:
        per = med(name, "marginal")
        rows.append(
            f"| {name} | {med(name, 'short'):.1f} | {med(name, 'long'):.1f} | {med(name, 'fixed'):.1f} |"
            f" {per * 1000:.1f} | {1 / per:.1f} | {local / per:.2f}× | {med(name, 'cpu_marginal') * 1000:.1f} |"
        )
    one_thread, ray1 = med("local, 1 thread", "marginal"), med("Ray, 1 worker", "marginal")
    cpu_one_thread, cpu_ray1 = med("local, 1 thread", "cpu_marginal"), med("Ray, 1 worker", "cpu_marginal")
    overhead, cpu_overhead = ray1 - one_thread, cpu_ray1 - cpu_one_thread
    driver = statistics.median(r["driver"] for name in variants if name.startswith("Ray") for r in results[name])
    estimate = [
        f"| {workers} | {IMAGENET * cpu_ray1 / workers / 3600:.1f} h | {IMAGENET * decode / workers / 3600:.2f} h |"
        for workers in (1, 8, 32, 128)
    ]
    md = [
        f"# audit on Ray vs local: {args.method}, {n} and {2 * n} images, batch {args.batch_size},"
        f" {env['device_name']}, {env['cpu_count']} CPUs",
        "",
        f"ray.init (a local instance, {resources.get('CPU', 0):g} CPUs): {ray_init:.1f} s — paid once per run"
        " of the command line, on top of each run's fixed cost below. Medians of"
        f" {args.repeats} round(s); load average before {env['load_before']}, after {loadavg()}.",
        "",
        f"| variant | {n} images (s) | {2 * n} images (s) | fixed cost (s) | ms per image | images/s | vs local"
        " | CPU ms per image |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Marginal figures: the cost of the longer run's extra images (start-up excluded). CPU ms: CPU time of"
        " this process and every Ray process, per extra image — less at the mercy of other load than wall time.",
        "",
        f"Where the CPU time went, per image of the {2 * n}-image run (ms; start-up included, so the Ray"
        " workers' torch import and model loading are in it):",
        "",
        f"| variant | {' | '.join(ROLES)} |",
        f"|---|{'---|' * len(ROLES)}",
        *[f"| {name} | " + " | ".join(f"{by_role(name, k) * 1000:.1f}" for k in ROLES) + " |" for name in variants],
        "",
        f"- Ray's overhead per image (Ray 1 worker − local 1 thread): **{overhead * 1000:.1f} ms** wall"
        f" ({overhead / one_thread:+.0%}), **{cpu_overhead * 1000:.1f} ms** CPU ({cpu_overhead / cpu_one_thread:+.0%}"
        f" of the 1-thread run's {cpu_one_thread * 1000:.1f} ms)",
        f"- read + decode + preprocess alone: {decode * 1000:.1f} ms CPU per image",
        f"- a local Ray instance at rest (raylet, GCS, agents, idle workers) uses {idle_cpu:.2f} CPU: part of the"
        " CPU figures above, in proportion to the wall time",
        f"- the driver's own work (unpickle, merge, append; checkpoints, at most ~5% of the time, not counted):"
        f" {driver * 1000:.2f} ms per image (one driver takes in at most ~{1 / driver:,.0f} images/s)",
        "",
        f"1.28 M images (ImageNet's training set) on N one-thread CPU workers at Ray 1 worker's"
        f" {cpu_ray1 * 1000:.1f} CPU ms per image (each worker on a core of its own), and the CPU time of reading"
        " and decoding alone, spread over N cores:",
        "",
        "| N | audit | reading and decoding |",
        "|---|---|---|",
        *estimate,
        "",
    ]
    text = "\n".join(md)
    print()
    print(text)
    payload = {
        "env": env,
        "ray_init": ray_init,
        "ray_idle_cpu": idle_cpu,
        "results": results,
        "decode_seconds_per_image": decode,
        "overhead_seconds_per_image": overhead,
        "overhead_cpu_seconds_per_image": cpu_overhead,
        "driver_seconds_per_image": driver,
    }
    md_path, _ = write_results("scale-cpu", text, payload)
    print(f"written {md_path}")
    return payload


if __name__ == "__main__":
    main()
