"""Grad-CAM, Score-CAM and Ablation-CAM: saliscope vs pytorch-grad-cam 1.5.7, same model, input and layer.

    PYTHONPATH=src python bench/bench_cam.py [--device cuda] [--repeats 5] [--models default,resnet50]

Also times the floor for Grad-CAM: a bare forward pass plus ``autograd.grad`` of the score with respect
to the layer's output (a hook, nothing else), and for Score-CAM the bare batched no-grad forward over the
same number of rows. All variants of one model are timed round-robin in one run (``_common.interleaved``);
Score-CAM and Ablation-CAM at every channel of the layer, as pytorch-grad-cam does.
ResNet-50 has random weights (no download); timing does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, environment, interleaved, load_input, load_model, pick_device

import saliscope as ss


def _models(names: list[str], device: torch.device) -> dict[str, tuple[torch.nn.Module, str]]:
    import torchvision

    out = {}
    for name in names:
        if name == "default":
            model, _how = load_model(device)
            out[name] = (model, "bn2")
        elif name == "resnet50":
            with torch.random.fork_rng():
                torch.manual_seed(0)
                out[name] = (torchvision.models.resnet50().eval().to(device), "layer4")
        else:
            raise SystemExit(f"unknown model {name}")
    return out


def bare_forward_backward(model: torch.nn.Module, layer: str, x: torch.Tensor, c: int) -> Any:
    """The floor: forward, and the gradient of the score with respect to the layer's output only."""
    box: dict[str, torch.Tensor] = {}

    def hook(_m: Any, _a: Any, out: torch.Tensor) -> torch.Tensor:
        leaf = out.detach().requires_grad_(True)
        box["a"] = leaf
        return leaf

    def run() -> Any:
        handle = model.get_submodule(layer).register_forward_hook(hook)
        try:
            with torch.enable_grad():
                score = model(x)[:, c].sum()
                return torch.autograd.grad(score, box["a"])
        finally:
            handle.remove()

    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--score-repeats", type=int, default=2, help="rounds for Score-CAM (slow: one pass per channel)"
    )
    parser.add_argument("--models", default="default,resnet50")
    parser.add_argument("--skip-score", action="store_true")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    torch.set_grad_enabled(True)
    from pytorch_grad_cam import AblationCAM as PgcAblation
    from pytorch_grad_cam import GradCAM as PgcGradCAM
    from pytorch_grad_cam import ScoreCAM as PgcScore
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    results: dict[str, Any] = {"env": environment(device), "models": {}}
    for name, (model, layer) in _models(args.models.split(","), device).items():
        x = load_input(model, device)
        with torch.no_grad():
            c = int(model(x).argmax())
        module = model.get_submodule(layer)
        ours = {
            m: cls(model, layer=layer)
            for m, cls in (("gradcam", ss.GradCAM), ("scorecam", ss.ScoreCAM), ("ablationcam", ss.AblationCAM))
        }
        targets = [ClassifierOutputTarget(c)]
        fns = {
            "saliscope Grad-CAM": lambda: ours["gradcam"].explain(x, target=c),
            "pytorch-grad-cam Grad-CAM": lambda: PgcGradCAM(model, [module])(x, targets=targets),
            "bare forward + grad to layer": bare_forward_backward(model, layer, x, c),
            "saliscope Ablation-CAM": lambda: ours["ablationcam"].explain(x, target=c),
        }
        timed = interleaved(fns, device, args.repeats, progress=lambda s: print(s, flush=True))
        # pytorch-grad-cam's Ablation-CAM re-runs the whole network per channel: minutes on a CPU, so it gets
        # the (few) slow rounds, with our fast variants timed again beside it for a same-run ratio.
        slow = {
            "pytorch-grad-cam Ablation-CAM": lambda: PgcAblation(model, [module])(x, targets=targets),
            "saliscope Ablation-CAM (same rounds)": fns["saliscope Ablation-CAM"],
        }
        timed.update(interleaved(slow, device, args.score_repeats, warmup=0, progress=lambda s: print(s, flush=True)))
        e = ours["gradcam"].explain(x, target=c)
        k = _channels(model, layer, x)
        agree = {"gradcam": _corr(e.extras["layer_map"][0], PgcGradCAM(model, [module])(x, targets=targets)[0], x)}
        if not args.skip_score:
            rows = x.expand(k, -1, -1, -1).contiguous()

            def bare_batched() -> Any:
                with torch.no_grad():
                    for start in range(0, k, 64):
                        model(rows[start : start + 64])

            ours["scorecam"].explain(x, target=c)  # warm-up (the layer probe)
            last: dict[str, Any] = {}  # each library's map from its timed run: theirs takes minutes to redo

            def keep(name: str, fn: Any) -> Any:
                def run() -> Any:
                    last[name] = fn()
                    return last[name]

                return run

            score_fns = {
                "saliscope Score-CAM": keep("ours", lambda: ours["scorecam"].explain(x, target=c)),
                "pytorch-grad-cam Score-CAM": keep("theirs", lambda: PgcScore(model, [module])(x, targets=targets)),
                f"bare no-grad forward x{k}": bare_batched,
            }
            timed.update(
                interleaved(score_fns, device, args.score_repeats, warmup=0, progress=lambda s: print(s, flush=True))
            )
            agree["scorecam"] = _corr(last["ours"].extras["layer_map"][0], last["theirs"][0], x)
        results["models"][name] = {
            "layer": layer,
            "channels": k,
            "class": c,
            "timings": {n: {"median": t["median"], "min": t["min"]} for n, t in timed.items()},
            "agreement": agree,
        }
        print(json.dumps(results["models"][name], indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"cam-{device.type}.json").write_text(json.dumps(results, indent=1))
    return results


def _channels(model: torch.nn.Module, layer: str, x: torch.Tensor) -> int:
    box: dict[str, int] = {}

    def hook(_m: Any, _a: Any, out: torch.Tensor) -> None:
        box["k"] = int(out.shape[1])

    handle = model.get_submodule(layer).register_forward_hook(hook)
    with torch.no_grad():
        model(x)
    handle.remove()
    return int(box["k"])


def _corr(ours_layer: torch.Tensor, theirs: Any, x: torch.Tensor) -> float:
    """Pearson correlation of our map (upsampled, min-max scaled like theirs) with pytorch-grad-cam's."""
    import numpy as np

    up = torch.nn.functional.interpolate(
        ours_layer[None, None].float().cpu(), size=x.shape[-2:], mode="bilinear", align_corners=False
    )[0, 0].numpy()
    return float(np.corrcoef(up.ravel(), np.asarray(theirs).ravel())[0, 1])


if __name__ == "__main__":
    main()
