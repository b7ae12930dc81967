"""Gradient, SmoothGrad-50 and IG-50: saliscope vs a bare forward+backward vs Captum, in one run.

    PYTHONPATH=src python bench/bench_gradients.py                 # CPU, 5 repeats after 1 warm-up
    PYTHONPATH=src python bench/bench_gradients.py --device cuda
    PYTHONPATH=src python bench/bench_gradients.py --quick         # 2 repeats, a short chunk sweep

Every figure is the median wall time (``time.perf_counter``, CUDA synchronised) over ``--repeats`` calls
after ``--warmup`` calls. saliscope runs with no tuning at all (default chunking); Captum runs at its
defaults (everything in one batch) and at the best chunk of a sweep. Results are printed and written to
``bench/results/gradients-<device>.{md,json}``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    environment,
    fmt,
    frozen,
    input_grad,
    interleaved,
    load_input,
    load_model,
    loadavg,
    pick_device,
    write_results,
)

N = 50  # samples (SmoothGrad) and steps (IG)
SIGMA = 0.15  # saliscope's default: fraction of the image's value range
SWEEP = (1, 2, 4, 5, 8, 10, 16, 25)  # Captum chunk sizes tried besides its default (all 50 at once)
QUICK_SWEEP = (4, 10, 25)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per figure (default 5, quick 2)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls before each figure")
    ap.add_argument("--quick", action="store_true", help="2 repeats and a short Captum chunk sweep")
    ap.add_argument("--sweep", type=int, nargs="*", default=None, help="Captum chunk sizes to try")
    ap.add_argument("--no-cold", action="store_true", help="skip the first-call (fresh explainer) timings")
    args = ap.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    sweep = tuple(args.sweep) if args.sweep is not None else (QUICK_SWEEP if args.quick else SWEEP)

    from captum.attr import IntegratedGradients as CaptumIG
    from captum.attr import NoiseTunnel, Saliency

    import saliscope as ss

    warnings.filterwarnings("ignore", category=UserWarning, module="captum")
    device = pick_device(args.device)
    torch.manual_seed(0)
    model, model_how = load_model(device)
    x = load_input(model, device)
    with torch.no_grad():
        c = int(model(x).argmax(1))
    params_require_grad = all(p.requires_grad for p in model.parameters())
    env = environment(device)
    env.update(
        model=model_how,
        params_require_grad_as_loaded=params_require_grad,
        target=c,
        repeats=repeats,
        warmup=args.warmup,
        input_shape=list(x.shape),
    )
    env["load_before"] = loadavg()
    print("# saliscope gradient benchmark")
    for k, v in env.items():
        print(f"- {k}: {v}")
    print(flush=True)

    # Every variant is timed round-robin (see _common.interleaved), so background load hits all alike.
    fns: dict[str, Any] = {}
    labels: dict[str, str] = {}

    def add(key: str, label: str, fn: Any) -> None:
        fns[key], labels[key] = fn, label

    def frozen_call(fn: Any) -> Any:
        def call() -> Any:
            with frozen(model):
                return fn()

        return call

    # 1. bare reference
    add(
        "bare_as_loaded",
        f"bare fwd+bwd, params requires_grad={params_require_grad} (as loaded)",
        lambda: input_grad(model, x, c),
    )
    add("bare_frozen", "bare fwd+bwd, params frozen", frozen_call(lambda: input_grad(model, x, c)))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    add(
        "bare_frozen_cl",
        "bare fwd+bwd, params frozen, channels_last input",
        frozen_call(lambda: input_grad(model, x_cl, c)),
    )
    add("forward_only", "forward only (no_grad)", torch.no_grad()(lambda: model(x)))
    # 2./3. single gradient
    grad_expl = ss.Gradient(model)
    saliency = Saliency(model)
    add("ours_gradient", "saliscope Gradient", lambda: grad_expl.explain(x, target=c))
    add("captum_saliency", "captum Saliency(abs=False)", lambda: saliency.attribute(x, target=c, abs=False))
    if not args.no_cold:
        add(
            "ours_gradient_cold", "saliscope Gradient, fresh explainer", lambda: ss.Gradient(model).explain(x, target=c)
        )
    # 4. SmoothGrad-50
    stdev = float(SIGMA * (x.max() - x.min()))  # the same noise level as saliscope's sigma=0.15
    sg = ss.SmoothGrad(ss.Gradient(model), n_samples=N, seed=0)
    add("ours_smoothgrad", "saliscope SmoothGrad(Gradient)", lambda: sg.explain(x, target=c))
    if not args.no_cold:
        add(
            "ours_smoothgrad_cold",
            "saliscope SmoothGrad, fresh explainer",
            lambda: ss.SmoothGrad(ss.Gradient(model), n_samples=N, seed=0).explain(x, target=c),
        )
    nt = NoiseTunnel(Saliency(model))

    def captum_sg(bs: int | None) -> Any:
        return lambda: nt.attribute(
            x, nt_type="smoothgrad", nt_samples=N, nt_samples_batch_size=bs, target=c, stdevs=stdev, abs=False
        )

    add("captum_smoothgrad_default", "captum NoiseTunnel(Saliency), nt_samples_batch_size=None", captum_sg(None))
    for bs in sweep:
        add(f"captum_smoothgrad_{bs}", f"captum NoiseTunnel(Saliency), nt_samples_batch_size={bs}", captum_sg(bs))
    # 5. IG-50
    ig = ss.IntegratedGradients(model, n_steps=N)
    ig_t = ss.IntegratedGradients(model, n_steps=N, rule="riemann-trapezoid")
    add("ours_ig", "saliscope IntegratedGradients (gauss-legendre)", lambda: ig.explain(x, target=c))
    add("ours_ig_trapezoid", "saliscope IntegratedGradients (riemann-trapezoid)", lambda: ig_t.explain(x, target=c))
    if not args.no_cold:
        add(
            "ours_ig_cold",
            "saliscope IG, fresh explainer",
            lambda: ss.IntegratedGradients(model, n_steps=N).explain(x, target=c),
        )
    cig = CaptumIG(model)

    def captum_ig(bs: int | None) -> Any:
        return lambda: cig.attribute(x, target=c, n_steps=N, internal_batch_size=bs)

    add("captum_ig_default", "captum IntegratedGradients, internal_batch_size=None", captum_ig(None))
    for bs in sweep:
        add(f"captum_ig_{bs}", f"captum IntegratedGradients, internal_batch_size={bs}", captum_ig(bs))

    print(f"timing {len(fns)} variants, {args.warmup} warm-up + {repeats} timed rounds (load {loadavg()})", flush=True)
    R: dict[str, Any] = interleaved(fns, device, repeats, args.warmup, progress=lambda s: print(s, flush=True))
    for key, r in R.items():
        r["label"] = labels[key]
        print(f"  {labels[key]:<58s} {r['median']:.4f} s  (min {r['min']:.4f}, cpu {r['cpu_median']:.3f})")
    R["captum_smoothgrad_sweep"] = {bs: R.pop(f"captum_smoothgrad_{bs}") for bs in sweep}
    R["captum_ig_sweep"] = {bs: R.pop(f"captum_ig_{bs}") for bs in sweep}
    R["ours_smoothgrad"]["batches"] = sg.explain(x, target=c).cost.batches
    R["ours_smoothgrad"]["samples_per_chunk"] = sg.inner.samples_per_chunk(x)
    R["ours_ig"]["batches"] = ig.explain(x, target=c).cost.batches
    R["ours_ig_trapezoid"]["batches"] = ig_t.explain(x, target=c).cost.batches
    key = ig.chunk_key(x)
    R["bytes_per_row"] = ig.chunker._bytes_per_row.get(key)
    env["load_after"] = loadavg()

    # numerical sanity: the same computation gives the same numbers -----------------------------
    ours_g = grad_expl.explain(x, target=c).attributions
    cap_g = saliency.attribute(x, target=c, abs=False)
    ours_ig = ig.explain(x, target=c).attributions
    cap_ig = cig.attribute(x, target=c, n_steps=N, internal_batch_size=10)
    checks = {
        "gradient_max_abs_diff_vs_captum": float((ours_g - cap_g).abs().max()),
        "gradient_max_abs": float(cap_g.abs().max()),
        "ig_max_abs_diff_vs_captum": float((ours_ig - cap_ig).abs().max()),
        "ig_max_abs": float(cap_ig.abs().max()),
    }

    md = render(env, R, checks, sweep)
    print()
    print(md)
    payload = {"environment": env, "results": R, "checks": checks, "sweep": list(sweep)}
    md_path, js_path = write_results(f"gradients-{device.type}", md, payload)
    print(f"written: {md_path}  {js_path}")
    return payload


def _best(default: dict[str, Any], sweep: dict[int, dict[str, Any]]) -> tuple[float, str]:
    options = [(default["median"], f"{N} (default)")] + [(r["median"], str(bs)) for bs, r in sweep.items()]
    return min(options)


def render(env: dict[str, Any], R: dict[str, Any], checks: dict[str, float], sweep: tuple[int, ...]) -> str:
    cold = "ours_gradient_cold" in R
    lines = [
        f"## Gradient methods — {env['device_name']} ({env['device']})",
        "",
        f"torch {env['torch']}, captum {env.get('captum')}, timm {env.get('timm')}, "
        f"torch threads {env['torch_threads']} (cpu_count {env['cpu_count']}); model: {env['model']}; "
        f"input {tuple(env['input_shape'])}, target {env['target']}; median of {env['repeats']} "
        f"after {env['warmup']} warm-up, all variants interleaved round-robin; load average before "
        f"{env['load_before']}, after {env['load_after']}. "
        f"Captum sweep: {', '.join(map(str, sweep))} and its default ({N}).",
        "",
    ]
    bare, bare_f = R["bare_as_loaded"]["median"], R["bare_frozen"]["median"]
    ours_g = R["ours_gradient"]["median"]
    lines += [
        f"**Bare reference** (forward + `autograd.grad` w.r.t. x): params requires_grad="
        f"{env['params_require_grad_as_loaded']} (as loaded) **{fmt(bare)} s**; params frozen **{fmt(bare_f)} s**; "
        f"params frozen, channels_last input (what saliscope feeds a conv net on CPU) "
        f"{fmt(R['bare_frozen_cl']['median'])} s; forward only (no_grad) {fmt(R['forward_only']['median'])} s.  ",
        f"saliscope Gradient / bare as loaded = **{ours_g / bare:.3f}×**; / bare frozen = **{ours_g / bare_f:.3f}×**; "
        f"/ bare frozen channels_last = **{ours_g / R['bare_frozen_cl']['median']:.3f}×** (target ≤ 1.10×).",
        "",
    ]
    header = [
        "method",
        "saliscope s",
        "captum default s",
        "captum best s (chunk)",
        "ratio default/ours",
        "ratio best/ours",
    ]
    if cold:
        header.append("saliscope 1st call s")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(
        name: str,
        ours: dict[str, Any],
        cdef: dict[str, Any],
        best: tuple[float, str] | None,
        cold_r: dict[str, Any] | None,
    ) -> None:
        o = ours["median"]
        cells = [
            name,
            fmt(o),
            fmt(cdef["median"]),
            f"{fmt(best[0])} ({best[1]})" if best else "–",
            f"{cdef['median'] / o:.2f}×",
            f"{best[0] / o:.2f}×" if best else "–",
        ]
        if cold:
            cells.append(fmt(cold_r["median"]) if cold_r else "–")
        lines.append("| " + " | ".join(cells) + " |")

    row("Gradient (captum: Saliency)", R["ours_gradient"], R["captum_saliency"], None, R.get("ours_gradient_cold"))
    sg_best = _best(R["captum_smoothgrad_default"], R["captum_smoothgrad_sweep"])
    row(
        f"SmoothGrad-{N} (captum: NoiseTunnel(Saliency))",
        R["ours_smoothgrad"],
        R["captum_smoothgrad_default"],
        sg_best,
        R.get("ours_smoothgrad_cold"),
    )
    ig_best = _best(R["captum_ig_default"], R["captum_ig_sweep"])
    row(
        f"IG-{N} gauss-legendre (captum: IG gausslegendre)",
        R["ours_ig"],
        R["captum_ig_default"],
        ig_best,
        R.get("ours_ig_cold"),
    )
    row(
        f"IG-{N} riemann-trapezoid (same captum columns)", R["ours_ig_trapezoid"], R["captum_ig_default"], ig_best, None
    )
    lines += [
        "",
        f"saliscope chunking (automatic): SmoothGrad {R['ours_smoothgrad']['samples_per_chunk']} samples/chunk, "
        f"{R['ours_smoothgrad']['batches']} model calls; IG {R['ours_ig']['batches']} model calls "
        f"(incl. the no-grad forward of input+baseline for the completeness gap); measured "
        f"{(R['bytes_per_row'] or 0) / 2**20:.1f} MiB saved activations per row. "
        "'1st call' = a fresh explainer, which first measures one row's activation bytes.",
        "",
        "Captum sweep (median s):",
        "",
        "| chunk | " + " | ".join(map(str, sweep)) + f" | {N} (default) |",
        "|---|" + "---|" * (len(sweep) + 1),
        "| NoiseTunnel nt_samples_batch_size | "
        + " | ".join(fmt(R["captum_smoothgrad_sweep"][b]["median"]) for b in sweep)
        + f" | {fmt(R['captum_smoothgrad_default']['median'])} |",
        "| IG internal_batch_size | "
        + " | ".join(fmt(R["captum_ig_sweep"][b]["median"]) for b in sweep)
        + f" | {fmt(R['captum_ig_default']['median'])} |",
        "",
        f"Same numbers check: Gradient max |ours − captum| = {checks['gradient_max_abs_diff_vs_captum']:.2e} "
        f"(max |grad| {checks['gradient_max_abs']:.2e}); IG-{N} max |ours − captum| = "
        f"{checks['ig_max_abs_diff_vs_captum']:.2e} (max |attr| {checks['ig_max_abs']:.2e}).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
