"""How long judging takes: ``saliscope evaluate`` / ``compare`` / ``demo`` of two source trees, interleaved.

    PYTHONPATH=src python bench/bench_judging.py --before /path/to/other/checkout/src [--repeats 2]
        [--runs evaluate compare-all demo]

Each run is the real command in a fresh process (imports and model loading included), once with
``PYTHONPATH=<before>`` and once with this tree's ``src``, alternating which goes first, ``--repeats`` times.
Reports wall seconds and the process's CPU seconds (user + system, children included) per run and the
ratio after / before from the same rounds, so background load hits both alike. Runs:

- ``evaluate``: ``saliscope evaluate chelsea.png --method gradient,gradcam`` (every metric and the flags);
- ``compare``: ``saliscope compare chelsea.png --methods gradient,gradcam,occlusion`` (the README's example);
- ``compare-all``: ``saliscope compare chelsea.png --methods all``;
- ``demo``: ``saliscope demo`` (four photos, four methods; after: with every map's verdicts and index.html).

Writes ``bench/results/judging.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import RESULTS, loadavg

HERE = Path(__file__).resolve().parent.parent / "src"
RUNS = {
    "evaluate": ["evaluate", "{image}", "--method", "gradient,gradcam"],
    "compare": ["compare", "{image}", "--methods", "gradient,gradcam,occlusion"],
    "compare-all": ["compare", "{image}", "--methods", "all"],
    "demo": ["demo"],
}


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(src: Path, args: list[str], out: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    c0, t0 = children_cpu(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "saliscope", *args, "--out", str(out)], env=env, capture_output=True, text=True
    )
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} with {src} failed:\n{done.stdout}\n{done.stderr}")
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="the other tree's src folder")
    ap.add_argument("--after", type=Path, default=HERE)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--runs", nargs="*", default=["evaluate"], choices=list(RUNS))
    args = ap.parse_args()
    from PIL import Image
    from skimage import data

    work = Path(tempfile.mkdtemp(prefix="saliscope-judging-"))
    image = work / "chelsea.png"
    Image.fromarray(data.chelsea()).save(image)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for run in args.runs:
        command = [part.format(image=image) for part in RUNS[run]]
        times: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in trees}
        for r in range(args.repeats):
            for which in ("before", "after") if r % 2 == 0 else ("after", "before"):
                wall, cpu = run_once(trees[which], command, work / f"{run}-{which}-{r}")
                times[which]["wall"].append(wall)
                times[which]["cpu"].append(cpu)
                print(f"{run:12} {which:6} wall {wall:8.1f} s  cpu {cpu:8.1f} s  (load {loadavg()})", flush=True)
        results[run] = times
        b, a = times["before"], times["after"]
        print(
            f"{run:12} median wall {statistics.median(b['wall']):.1f} → {statistics.median(a['wall']):.1f} s "
            f"({statistics.median(a['wall']) / statistics.median(b['wall']):.2f}×), cpu "
            f"{statistics.median(b['cpu']):.1f} → {statistics.median(a['cpu']):.1f} s "
            f"({statistics.median(a['cpu']) / statistics.median(b['cpu']):.2f}×)",
            flush=True,
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "judging.json").write_text(json.dumps({"trees": {k: str(v) for k, v in trees.items()}, **results}))


if __name__ == "__main__":
    main()
