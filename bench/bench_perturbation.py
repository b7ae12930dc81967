"""Occlusion and LIME: saliscope vs Captum at the same settings, timed round-robin in one run.

    PYTHONPATH=src python bench/bench_perturbation.py              # CPU, 3 timed rounds (~15 min on 2 cores)
    PYTHONPATH=src python bench/bench_perturbation.py --repeats 1  # one round, a quick look

Settings (the same for both libraries): the default model on ``skimage.data.chelsea()`` (1, 3, 224, 224),
the predicted class.

- **Occlusion**: 16 × 16 windows at stride 8 over all channels, hidden with 0 (model space): 27 × 27 =
  729 windows + the clean image = 730 forward passes. Captum ``Occlusion(sliding_window_shapes=(3, 16, 16),
  strides=(3, 8, 8), baselines=0)``; both average the score drops over the windows covering a pixel.
- **LIME**: the same 50-segment SLIC superpixels (saliscope's, handed to Captum as ``feature_mask``),
  500 samples, each superpixel kept with probability 1/2, hidden with 0, sample weights
  ``exp(-d²/0.25²)`` on the cosine distance in superpixel space, ridge regression with alpha 1 (Captum:
  ``SkLearnRidge(alpha=1)`` and the same similarity function).

saliscope runs at its defaults (chunks from its memory budget). Captum runs at its default
``perturbations_per_eval=1``, at 16, and at 16 with a channels_last input (what saliscope feeds a CPU
conv net). Every figure is the median wall time over ``--repeats`` rounds; all variants interleaved
round-robin (``_common.interleaved``) with no untimed warm-up round; each variant is warmed by one small
call first. Agreement: Pearson correlation of the maps with Captum's (occlusion: same computation;
LIME: independent random draws, so also saliscope vs saliscope with another seed as the noise floor).
Writes ``bench/results/perturbation-<device>.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, fmt, interleaved, load_input, load_model, loadavg, pick_device, write_results

WINDOW, STRIDE = 16, 8
N_LIME, SEGMENTS, KERNEL_WIDTH, ALPHA = 500, 50, 0.25, 1.0


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten().double(), b.flatten().double()]))[0, 1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    ap.add_argument(
        "--skip-captum-default",
        action="store_true",
        help="leave out Captum at perturbations_per_eval=1 (the slowest variants)",
    )
    args = ap.parse_args(argv)

    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime
    from captum.attr import Occlusion as CaptumOcclusion

    import saliscope as ss
    from saliscope.methods.perturbation.superpixels import superpixels

    warnings.filterwarnings("ignore", category=UserWarning)
    device = pick_device(args.device)
    model, model_how = load_model(device)
    x = load_input(model, device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        c = int(model(x).argmax(1))
    env = environment(device)
    env.update(model=model_how, target=c, repeats=args.repeats, input_shape=list(x.shape), load_before=loadavg())
    print("# saliscope perturbation benchmark")
    for k, v in env.items():
        print(f"- {k}: {v}")
    print(flush=True)

    labels, counts = superpixels(x, "slic", n_segments=SEGMENTS)
    feature_mask = labels.unsqueeze(1)  # (1, 1, H, W), broadcast over the channels

    def similarity(original: Any, perturbed: Any, interpretable: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        # saliscope's LIME kernel: exp(-d²/w²), d the cosine distance to all-ones in superpixel space
        cosine = (interpretable.float().sum() / interpretable.numel()).sqrt()
        return torch.exp(-((1 - cosine) ** 2) / KERNEL_WIDTH**2)

    occ = ss.Occlusion(model, window=WINDOW, stride=STRIDE)
    lime = ss.LIME(model, n_samples=N_LIME, n_superpixels=SEGMENTS, kernel_width=KERNEL_WIDTH, alpha=ALPHA, seed=0)
    c_occ = CaptumOcclusion(model)
    c_lime = Lime(model, interpretable_model=SkLearnRidge(alpha=ALPHA), similarity_func=similarity)

    def captum_occlusion(inp: torch.Tensor, ppe: int) -> Any:
        return lambda: c_occ.attribute(
            inp,
            sliding_window_shapes=(3, WINDOW, WINDOW),
            strides=(3, STRIDE, STRIDE),
            baselines=0,
            target=c,
            perturbations_per_eval=ppe,
        )

    def captum_lime(inp: torch.Tensor, ppe: int) -> Any:
        return lambda: c_lime.attribute(
            inp, target=c, feature_mask=feature_mask, n_samples=N_LIME, baselines=0, perturbations_per_eval=ppe
        )

    fns: dict[str, Any] = {
        "ours_occlusion": lambda: occ.explain(x, target=c),
        "captum_occlusion_16": captum_occlusion(x, 16),
        "captum_occlusion_16_cl": captum_occlusion(x_cl, 16),
        "ours_lime": lambda: lime.explain(x, target=c),
        "captum_lime_16": captum_lime(x, 16),
        "captum_lime_16_cl": captum_lime(x_cl, 16),
    }
    if not args.skip_captum_default:
        fns["captum_occlusion_1"] = captum_occlusion(x, 1)
        fns["captum_lime_1"] = captum_lime(x, 1)
    labels_of = {
        "ours_occlusion": "saliscope Occlusion (default chunks)",
        "captum_occlusion_1": "captum Occlusion, perturbations_per_eval=1 (default)",
        "captum_occlusion_16": "captum Occlusion, perturbations_per_eval=16",
        "captum_occlusion_16_cl": "captum Occlusion, perturbations_per_eval=16, channels_last input",
        "ours_lime": "saliscope LIME (default chunks)",
        "captum_lime_1": "captum Lime, perturbations_per_eval=1 (default)",
        "captum_lime_16": "captum Lime, perturbations_per_eval=16",
        "captum_lime_16_cl": "captum Lime, perturbations_per_eval=16, channels_last input",
    }

    # Warm every code path once on a small problem (oneDNN primitives, skimage import, chunk probe).
    ss.Occlusion(model, window=112, stride=112).explain(x, target=c)
    ss.LIME(model, n_samples=8, n_superpixels=SEGMENTS).explain(x, target=c)
    for inp in (x, x_cl):
        for ppe in (1, 16):
            c_occ.attribute(
                inp,
                sliding_window_shapes=(3, 112, 112),
                strides=(3, 112, 112),
                baselines=0,
                target=c,
                perturbations_per_eval=ppe,
            )
            c_lime.attribute(
                inp,
                target=c,
                feature_mask=feature_mask,
                n_samples=min(ppe, 16) + 1,
                baselines=0,
                perturbations_per_eval=ppe,
            )

    print(f"timing {len(fns)} variants, {args.repeats} rounds (load {loadavg()})", flush=True)
    R = interleaved(fns, device, args.repeats, warmup=0, progress=lambda s: print(s, flush=True))
    for key, r in R.items():
        r["label"] = labels_of[key]
        print(f"  {labels_of[key]:<64s} {r['median']:.3f} s  (min {r['min']:.3f}, cpu {r['cpu_median']:.2f})")
    env["load_after"] = loadavg()

    e_occ = occ.explain(x, target=c)
    e_lime = lime.explain(x, target=c)
    torch.manual_seed(0)
    cap_occ = captum_occlusion(x, 16)()[:, :1]
    cap_lime = captum_lime(x, 16)()[:, :1]
    other_seed = ss.LIME(
        model, n_samples=N_LIME, n_superpixels=SEGMENTS, kernel_width=KERNEL_WIDTH, alpha=ALPHA, seed=1
    ).explain(x, target=c)
    checks = {
        "occlusion_windows": int(e_occ.extras["window_drops"].numel()),
        "occlusion_forward_passes": e_occ.cost.forward_passes,
        "occlusion_batches": e_occ.cost.batches,
        "occlusion_corr_vs_captum": correlation(e_occ.attributions, cap_occ),
        "occlusion_max_abs_diff_vs_captum": float((e_occ.attributions - cap_occ).abs().max()),
        "occlusion_max_abs": float(cap_occ.abs().max()),
        "lime_superpixels": counts[0],
        "lime_forward_passes": e_lime.cost.forward_passes,
        "lime_batches": e_lime.cost.batches,
        "lime_corr_vs_captum": correlation(e_lime.attributions, cap_lime),
        "lime_corr_vs_saliscope_seed_1": correlation(e_lime.attributions, other_seed.attributions),
    }
    for k, v in checks.items():
        print(f"  {k}: {v}")
    md = render(env, R, checks)
    print()
    print(md)
    payload = {"environment": env, "results": R, "checks": checks}
    md_path, js_path = write_results(f"perturbation-{device.type}", md, payload)
    print(f"written: {md_path}  {js_path}")
    return payload


def render(env: dict[str, Any], R: dict[str, Any], checks: dict[str, Any]) -> str:
    lines = [
        f"## Perturbation methods — {env['device_name']} ({env['device']})",
        "",
        f"torch {env['torch']}, captum {env.get('captum')}, torch threads {env['torch_threads']} "
        f"(cpu_count {env['cpu_count']}); model: {env['model']}; input {tuple(env['input_shape'])}, target "
        f"{env['target']}; median of {env['repeats']} rounds, variants interleaved round-robin; load average "
        f"before {env['load_before']}, after {env['load_after']}.",
        "",
        "| method (settings) | variant | median s | Captum / saliscope |",
        "|---|---|---:|---:|",
    ]
    groups = (
        (
            "occlusion",
            f"Occlusion ({WINDOW}×{WINDOW} window, stride {STRIDE}, {checks['occlusion_forward_passes']} passes)",
        ),
        ("lime", f"LIME ({checks['lime_superpixels']} SLIC superpixels, {N_LIME} samples)"),
    )
    for name, title in groups:
        ours = R[f"ours_{name}"]["median"]
        for key, r in R.items():
            if name not in key:
                continue
            ratio = "1" if key.startswith("ours") else f"**{r['median'] / ours:.2f}×**"
            lines.append(f"| {title} | {r['label']} | {fmt(r['median'])} | {ratio} |")
    lines += [
        "",
        f"Agreement with Captum: occlusion r = {checks['occlusion_corr_vs_captum']:.6f} (max |diff| "
        f"{checks['occlusion_max_abs_diff_vs_captum']:.2e} of max |map| {checks['occlusion_max_abs']:.2f}); LIME r = "
        f"{checks['lime_corr_vs_captum']:.3f} (independent draws; saliscope seed 0 vs seed 1: r = "
        f"{checks['lime_corr_vs_saliscope_seed_1']:.3f}). saliscope ran occlusion in "
        f"{checks['occlusion_batches']} model calls and LIME in {checks['lime_batches']}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
