"""The timm sweep as a table: for each architecture of ``tests/methods/timm_sweep.py`` (random weights, its
default input size, the predicted class), whether Gradient, Grad-CAM (with the layer it chose) and attention
rollout give a real map, or why rollout is refused; and the seconds each architecture took (wall and CPU).

    PYTHONPATH=src python bench/timm_sweep.py                 # Markdown table on stdout (docs/models.md)
    PYTHONPATH=src taskset -c 0,1 python bench/timm_sweep.py  # the sweep's time on two cores
    PYTHONPATH=src python bench/timm_sweep.py levit_128s      # some rows only

As in the test, a Grad-CAM map whose positive part is empty because the layer holds only evidence against the
class (saliscope warns) is shown by its signed map.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "methods"))

from timm_sweep import ARCHITECTURES, build, input_size

import saliscope as ss
from saliscope.core.errors import MethodError
from saliscope.core.views import FlatMapWarning


def real(e: ss.Explanation) -> bool:
    a = e.attributions
    return bool(torch.isfinite(a).all()) and float(a.max() - a.min()) > 1e-6 * max(float(a.abs().max()), 1e-30)


def main() -> None:
    print("| architecture | family | input | Gradient | Grad-CAM (automatic layer) | attention rollout |")
    print("|---|---|---|---|---|---|")
    wall_total = cpu_total = 0.0
    wanted = set(sys.argv[1:])
    for arch in [a for a in ARCHITECTURES if not wanted or a.name in wanted]:
        wall, cpu = time.perf_counter(), time.process_time()
        model = build(arch.name)
        h, w = input_size(model)
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1))
        grad = "✓" if real(ss.Gradient(model).explain(x)) else "flat"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FlatMapWarning)
            cam = ss.GradCAM(model).explain(x)
        signed = any("only against it" in str(w.message) for w in caught)
        if signed:
            cam = ss.GradCAM(model, evidence="signed").explain(x)
        cam_cell = f"{'✓' if real(cam) else 'flat'} `{cam.params['layer']}`"
        if signed:
            cam_cell += " (positive part empty at random init; signed map shown)"
        try:
            rollout = "✓" if real(ss.AttentionRollout(model).explain(x)) else "flat"
        except MethodError as exc:
            rollout = "refused: " + exc.problem.removeprefix("attention rollout does not apply: ")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall_total, cpu_total = wall_total + wall, cpu_total + cpu
        print(f"| `{arch.name}` | {arch.family} | {h} | {grad} | {cam_cell} | {rollout} |", flush=True)
        print(f"{arch.name}: {wall:.2f} s wall, {cpu:.2f} s CPU", file=sys.stderr, flush=True)
    print(f"{len(ARCHITECTURES)} architectures: {wall_total:.1f} s wall, {cpu_total:.1f} s CPU", file=sys.stderr)


if __name__ == "__main__":
    main()
