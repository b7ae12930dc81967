"""Explaining a detection: Grad-CAM for a box vs the bare forward + backward to the layer, and D-RISE's cost.

    PYTHONPATH=src python bench/bench_detection.py           # CPU: Grad-CAM (7 rounds), D-RISE 1,000 and 4,000 masks
    PYTHONPATH=src python bench/bench_detection.py --quick   # 3 rounds, D-RISE at 250 and 1,000 masks
    PYTHONPATH=src python bench/bench_detection.py --device cuda

Model: torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn`` with random weights (no download; timing does
not depend on the weights) and ``box_score_thresh=0`` so that the random model has detections; its own input
size (shorter side 320). Input: ``skimage.data.chelsea()`` as pixels in [0, 1] (451×300), as torchvision's
detectors take it. The explained box is the model's most confident detection on that photo.

- **Grad-CAM for a box** (``GradCAM(model).explain(x, BoxTarget(box, label))``: the automatic layer, the FPN
  level torchvision pools the box from) against the floor: one forward pass with a hook that hands the rest of
  the network a leaf at that layer, the same box score, and ``autograd.grad`` of it to the leaf. Both round-robin
  in one run (``_common.interleaved``); the ratio is of their medians.
- **D-RISE** at 1,000 and 4,000 masks (the paper's 16×16 grid, p = 0.5): seconds per image, one image. At the
  smallest count (``--floor-masks``) also the floor: as many bare no-grad forward passes of the detector as
  itself, in batches of 16 (no masks, no scoring), so the ratio says what the masks, the scoring and the map
  add to the passes (D-RISE runs its passes on the folded inference copy, which the floor does not).

Results are printed and written to ``bench/results/detection-<device>.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, fmt, interleaved, loadavg, pick_device, write_results

import saliscope as ss

LAYER_NOTE = "the automatic layer (the FPN level torchvision pools the box from)"


def detector(device: torch.device) -> torch.nn.Module:
    from torchvision.models import detection

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, box_score_thresh=0.0
        )
    return model.eval().to(device)


def photo(device: torch.device) -> torch.Tensor:
    from skimage import data

    pixels = torch.from_numpy(np.asarray(data.chelsea(), dtype=np.float32) / 255.0)
    return pixels.permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def bare_forward_backward(model: torch.nn.Module, layer: str, x: torch.Tensor, bound: Any) -> Any:
    """The floor: a forward pass, and the gradient of the box's score with respect to the layer's output only."""
    box: dict[str, torch.Tensor] = {}

    def hook(_m: Any, _a: Any, out: torch.Tensor) -> torch.Tensor:
        leaf = out.detach().requires_grad_(True)
        box["a"] = leaf
        return leaf

    def run() -> Any:
        handle = model.get_submodule(layer).register_forward_hook(hook)
        try:
            with torch.enable_grad():
                score = bound(model(x)).sum()
                return torch.autograd.grad(score, box["a"])
        finally:
            handle.remove()

    return run


def bare_forwards(model: torch.nn.Module, x: torch.Tensor, n: int, batch: int = 16) -> Any:
    rows = x.expand(batch, -1, -1, -1).contiguous()

    def run() -> None:
        with torch.no_grad():
            for start in range(0, n, batch):
                model(rows[: min(batch, n - start)])

    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--repeats", type=int, default=None, help="Grad-CAM rounds (default 7, quick 3)")
    ap.add_argument("--masks", type=int, nargs="*", default=None, help="D-RISE mask counts (default 1000 4000)")
    ap.add_argument("--drise-repeats", type=int, default=1, help="D-RISE rounds per mask count")
    ap.add_argument(
        "--floor-masks", type=int, default=None, help="time the bare floor at this count (default: smallest)"
    )
    ap.add_argument("--quick", action="store_true", help="3 Grad-CAM rounds, D-RISE at 250 and 1,000 masks")
    args = ap.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 7)
    masks = args.masks or ([250, 1000] if args.quick else [1000, 4000])
    device = pick_device(args.device)

    model, x = detector(device), photo(device)
    with torch.no_grad():
        det = model(x)[0]
    box, label = det["boxes"][0].cpu(), int(det["labels"][0])
    target = ss.BoxTarget(box, label)
    bound = target.bind(None, 1)
    gradcam = ss.GradCAM(model)
    first = gradcam.explain(x, target)  # the layer probe, made once and cached
    layer = str(first.params["layer"])
    env = environment(device)
    env.update(
        model="torchvision fasterrcnn_mobilenet_v3_large_320_fpn, random weights, box_score_thresh=0",
        input_shape=list(x.shape),
        box=[round(float(v), 1) for v in box],
        label=label,
        layer=layer,
        repeats=repeats,
        load_before=loadavg(),
    )
    print("# saliscope detection benchmark")
    for k, v in env.items():
        print(f"- {k}: {v}", flush=True)

    timed = interleaved(
        {
            "saliscope Grad-CAM, box target": lambda: gradcam.explain(x, target),
            "bare forward + grad to the layer": bare_forward_backward(model, layer, x, bound),
        },
        device,
        repeats,
        progress=lambda s: print(s, flush=True),
    )
    ours, floor = timed["saliscope Grad-CAM, box target"]["median"], timed["bare forward + grad to the layer"]["median"]

    drise: dict[str, Any] = {}
    floor_at = args.floor_masks or min(masks)
    for n in masks:
        explainer = ss.DRISE(model, n_masks=n, seed=0, progress=False)
        fns = {f"D-RISE {n} masks": lambda e=explainer: e.explain(x, ss.DetectionTarget(0))}
        if n == floor_at:
            fns[f"bare no-grad forward x{n}"] = bare_forwards(model, x, n)
        runs = interleaved(
            fns,
            device,
            args.drise_repeats,
            warmup=0,
            progress=lambda s: print(s, flush=True),
        )
        drise[str(n)] = {name: {"median": t["median"], "min": t["min"]} for name, t in runs.items()}
        print(f"  D-RISE {n} masks: {fmt(runs[f'D-RISE {n} masks']['median'])} s per image", flush=True)
    env["load_after"] = loadavg()

    lines = [
        "# Explaining a detection",
        "",
        *[f"- {k}: {v}" for k, v in env.items()],
        "",
        f"| Grad-CAM for a box ({LAYER_NOTE}: `{layer}`) | median s | min s |",
        "|---|---|---|",
        *[f"| {name} | {fmt(t['median'])} | {fmt(t['min'])} |" for name, t in timed.items()],
        f"| **ratio** saliscope / bare | **{ours / floor:.2f}** | |",
        "",
        "| D-RISE (16×16 grid, p = 0.5), one image | s per image | bare forwards, same count | ratio |",
        "|---|---|---|---|",
    ]
    for n in masks:
        ours_d = drise[str(n)][f"D-RISE {n} masks"]["median"]
        bare = drise[str(n)].get(f"bare no-grad forward x{n}")
        floor_text = f"{fmt(bare['median'])} | {ours_d / bare['median']:.2f}" if bare else "– | –"
        lines.append(f"| {n} masks | {fmt(ours_d)} | {floor_text} |")
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    payload = {
        "env": env,
        "gradcam": {n: {"median": t["median"], "min": t["min"]} for n, t in timed.items()},
        "gradcam_ratio": ours / floor,
        "drise": drise,
    }
    md, js = write_results(f"detection-{device.type}", markdown, payload)
    print(f"written: {md}, {js}")
    return payload


if __name__ == "__main__":
    main()
