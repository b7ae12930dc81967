"""What keeping freed memory (``saliscope.keep_freed_memory``, on in the ``saliscope`` command) is worth.

    PYTHONPATH=src python bench/allocator.py [--repeats 3]

Each setting runs in fresh processes — the allocator is the process's, and cannot be set back — alternating
``SALISCOPE_CPU_ALLOCATOR=system`` (glibc as it comes) and the kept setting, ``--repeats`` times. Every process
loads the default model and chelsea (``_common.load_input``) and times, median of 5 after a warm-up, with its
page faults:

- a no-grad forward row and an input-gradient row on the inference copy (32 and 16 rows a pass);
- saliscope's ``IntegratedGradients(model)`` and Captum's ``IntegratedGradients(model).attribute`` at their
  defaults (when Captum is installed).

Results: ``bench/results/allocator-<device>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, loadavg, pick_device, write_results

CHILD = r"""
import json, resource, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import torch
import saliscope as ss
from _common import input_grad, load_input
from saliscope.core.inference_copy import inference_net

applied = ss.keep_freed_memory()
model = ss.load_model()
x = load_input(model, torch.device("cpu"))
with torch.no_grad():
    c = int(model(x).argmax())
fast = inference_net(model, x)
g = torch.Generator().manual_seed(0)
rows = {n: torch.randn(n, *x.shape[1:], generator=g).contiguous(memory_format=torch.channels_last) for n in (16, 32)}

def forward():
    with torch.no_grad():
        fast(rows[32])

runs = {
    "forward row (32 a pass)": (forward, 32),
    "gradient row (16 a pass)": (lambda: input_grad(fast, rows[16], c), 16),
}
ig = ss.IntegratedGradients(model)
runs["saliscope IntegratedGradients(model)"] = (lambda: ig.explain(x, c), 1)
try:
    from captum.attr import IntegratedGradients

    theirs = IntegratedGradients(model)
    runs["Captum IntegratedGradients(model)"] = (lambda: theirs.attribute(x, target=c), 1)
except ImportError:
    pass
out = {"applied": applied}
for name, (fn, n) in runs.items():
    fn()
    times, faults = [], []
    for _ in range(5):
        f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) / n)
        faults.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n)
    out[name] = {"s": statistics.median(times), "faults": statistics.median(faults)}
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = pick_device("cpu")
    here = str(Path(__file__).resolve().parent)
    env = {**environment(device), "load_before": loadavg()}
    results: dict[str, list[dict[str, Any]]] = {"system": [], "kept": []}
    for r in range(args.repeats):
        for setting in ("system", "kept") if r % 2 == 0 else ("kept", "system"):
            child_env = {**os.environ, "SALISCOPE_CPU_ALLOCATOR": "system" if setting == "system" else ""}
            done = subprocess.run(
                [sys.executable, "-c", CHILD, here], capture_output=True, text=True, env=child_env, check=True
            )
            found = json.loads(done.stdout.strip().splitlines()[-1])
            assert found.pop("applied") == (setting == "kept"), setting
            results[setting].append(found)
            print(setting, json.dumps(found), flush=True)
    env["load_after"] = loadavg()
    names = list(results["system"][0])
    table = {
        name: {
            setting: {key: statistics.median(run[name][key] for run in results[setting]) for key in ("s", "faults")}
            for setting in results
        }
        for name in names
    }
    lines = [
        f"## Keeping freed memory — {env['device_name']}, torch {env['torch']}, {env['torch_threads']} threads",
        "",
        f"Median over {args.repeats} fresh processes per setting, alternating; load {env['load_before']} → "
        f"{env['load_after']}.",
        "",
        "| run | glibc as it comes: ms | page faults | freed memory kept: ms | page faults | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in table.items():
        sys_, kept = row["system"], row["kept"]
        lines.append(
            f"| {name} | {sys_['s'] * 1e3:.1f} | {sys_['faults']:.0f} | {kept['s'] * 1e3:.1f} | "
            f"{kept['faults']:.0f} | {sys_['s'] / kept['s']:.2f}× |"
        )
    ours, theirs = "saliscope IntegratedGradients(model)", "Captum IntegratedGradients(model)"
    if theirs in table:
        lines += [
            "",
            f"IG time ÷ Captum's: {table[ours]['system']['s'] / table[theirs]['system']['s']:.2f} with glibc as it "
            f"comes, {table[ours]['kept']['s'] / table[theirs]['kept']['s']:.2f} with freed memory kept.",
        ]
    md = "\n".join(lines) + "\n"
    print(md)
    write_results(f"allocator-{device.type}", md, {"environment": env, "runs": results, "table": table})


if __name__ == "__main__":
    main()
