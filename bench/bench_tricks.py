"""Where saliscope's time goes, and which honest speed-ups keep the numbers the same.

    PYTHONPATH=src python bench/bench_tricks.py [--device cuda] [--repeats 5]

1. Frozen parameters vs parameters requiring grad (Captum leaves them on): bytes autograd saves per row,
   and forward+backward time at a few chunk sizes.
2. channels_last model + input: time, and how far the gradient moves.
3. SmoothGrad noise: saliscope's ``Noise`` (blocks of 16 draws from seeded generators on the device) vs
   one CPU generator per sample + stack + copy (the first version; slow on CUDA), vs one device randn.
4. Overheads: saliscope SmoothGrad-50 / IG-50 vs bare chunked forward+backward at the same chunk size,
   and the first-call cost of measuring a row.
5. explain() bookkeeping: saliscope Gradient vs a bare frozen forward+backward, and ``explaining()`` alone.
6. (CPU only) the channels_last input ``input_gradients`` feeds a conv net vs a contiguous input, on
   Gradient / SmoothGrad-50 / IG-50, and how far the maps move.
7. No-grad forward passes (what perturbation methods, Score-CAM and the faithfulness metrics run): the
   model as loaded with a contiguous input, with a channels_last input, and the inference copy
   (``core/inference_copy.py``: norms folded, "same" padding made static) with a channels_last input,
   per row at a few chunk sizes; on the default model and on torchvision ResNet-50 (random weights), with
   how far the outputs move.
8. Filling and writing: the blur fill of a deletion check (4 rows) as torchvision's square window vs
   saliscope's two 1-D passes, with how far they differ; and the demo's PNGs (chelsea's overlay and its
   four-method panel) encoded at Pillow's default zlib level 6 vs saliscope's ``PNG_COMPRESS_LEVEL``, with
   their sizes.
Results: ``bench/results/tricks-<device>.{md,json}``.
"""

from __future__ import annotations

import argparse
import copy
import sys
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

N = 50


def saved_bytes(model: torch.nn.Module, x: torch.Tensor, c: int) -> int:
    from saliscope.core.chunking import _SavedBytes

    counter = _SavedBytes({p.untyped_storage().data_ptr() for p in model.parameters()})
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
        input_grad(model, x, c)
    return counter.total


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--sizes", type=int, nargs="*", default=None, help="chunk sizes for sections 1-2")
    ap.add_argument("--sections", type=int, nargs="*", default=[1, 2, 3, 4, 5, 6, 7, 8], help="which sections to run")
    args = ap.parse_args(argv)
    sections = set(args.sections)

    import saliscope as ss
    from saliscope.wrappers.smoothing import Noise

    device = pick_device(args.device)
    model, how = load_model(device)
    x = load_input(model, device)
    with torch.no_grad():
        c = int(model(x).argmax(1))
    env = environment(device)
    env.update(model=how, target=c, repeats=args.repeats, warmup=args.warmup, load_before=loadavg())
    print("# tricks")
    for k, v in env.items():
        print(f"- {k}: {v}")
    progress = lambda s: print(s, flush=True)  # noqa: E731
    out: dict[str, Any] = {}
    sizes = tuple(args.sizes) if args.sizes else ((1, 5, 10) if device.type == "cpu" else (1, 10, 50))
    batches = {b: x.expand(b, -1, -1, -1).contiguous() for b in sizes}
    shape = x.shape[1:]

    if 1 in sections:
        # 1. frozen vs requires_grad -------------------------------------------------------------------
        with frozen(model):
            sb_frozen = saved_bytes(model, x, c)
        sb_live = saved_bytes(model, x, c)
        out["saved_bytes_per_row"] = {"frozen": sb_frozen, "requires_grad": sb_live}
        fns: dict[str, Any] = {}
        for b in sizes:
            xb = batches[b]
            fns[f"frozen b={b}"] = (lambda xb: lambda: _frozen_grad(model, xb, c))(xb)
            fns[f"requires_grad b={b}"] = (lambda xb: lambda: input_grad(model, xb, c))(xb)
        print("1. frozen vs requires_grad", flush=True)
        out["frozen"] = interleaved(fns, device, args.repeats, args.warmup, progress)

    if 2 in sections:
        # 2. channels_last -----------------------------------------------------------------------------
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        fns = {}
        for b in sizes:
            xb = batches[b]
            xb_cl = xb.contiguous(memory_format=torch.channels_last)
            fns[f"contiguous b={b}"] = (lambda xb: lambda: _frozen_grad(model, xb, c))(xb)
            fns[f"channels_last b={b}"] = (lambda xb: lambda: _frozen_grad(model_cl, xb, c))(xb_cl)
        print("2. channels_last", flush=True)
        out["channels_last"] = interleaved(fns, device, args.repeats, args.warmup, progress)
        g_ref = _frozen_grad(model, x, c)
        g_cl = _frozen_grad(model_cl, x.contiguous(memory_format=torch.channels_last), c)
        out["channels_last_max_abs_diff"] = float((g_ref - g_cl).abs().max())
        out["channels_last_rel_diff"] = float((g_ref - g_cl).norm() / g_ref.norm())
        del model_cl

    if 3 in sections:
        # 3. SmoothGrad noise --------------------------------------------------------------------------

        def noise_saliscope() -> torch.Tensor:  # what SmoothGrad does: blocks of 16 draws on the device
            return Noise(0, shape, device, x.dtype)(list(range(N)))

        def noise_per_sample_cpu() -> torch.Tensor:  # the first version: one CPU generator per sample
            draws = [torch.randn(shape, generator=torch.Generator().manual_seed(i)) for i in range(N)]
            return torch.stack(draws).to(device)

        dev_gen = torch.Generator(device=device).manual_seed(0)

        def noise_device() -> torch.Tensor:
            return torch.randn((N, *shape), generator=dev_gen, device=device, dtype=x.dtype)

        print("3. noise", flush=True)
        out["noise"] = interleaved(
            {
                "saliscope Noise (blocks of 16, on the device)": noise_saliscope,
                "one CPU generator per sample, stack, copy": noise_per_sample_cpu,
                "one device randn (the floor)": noise_device,
            },
            device,
            args.repeats * 2,
            args.warmup,
            progress,
        )

    if 4 in sections:
        # 4. overheads ---------------------------------------------------------------------------------
        sg = ss.SmoothGrad(ss.Gradient(model), n_samples=N, seed=0)
        ig = ss.IntegratedGradients(model, n_steps=N)
        sg.explain(x, target=c)
        ig.explain(x, target=c)
        k = sg.inner.samples_per_chunk(x) or 1
        rows = x.expand(N, -1, -1, -1).contiguous()

        def bare_chunked() -> None:
            with frozen(model):
                for s in range(0, N, k):
                    input_grad(model, rows[s : s + k], c)

        def bare_chunked_plus2() -> None:
            bare_chunked()
            with torch.no_grad():
                model(torch.cat([x, torch.zeros_like(x)]))

        def maps_accumulate() -> None:  # SmoothGrad's float64 accumulation of 50 maps
            total = torch.zeros((1, *shape), dtype=torch.float64, device=device)
            for s in range(0, N, k):
                maps = rows[s : s + k].double()
                total.index_add_(0, torch.zeros(maps.shape[0], dtype=torch.long, device=device), maps)

        print(f"4. overheads (chunk {k})", flush=True)
        out["overheads_chunk"] = k
        out["overheads"] = interleaved(
            {
                "saliscope SmoothGrad-50": lambda: sg.explain(x, target=c),
                "saliscope SmoothGrad-50, fresh explainer": lambda: ss.SmoothGrad(
                    ss.Gradient(model), n_samples=N, seed=0
                ).explain(x, target=c),
                f"bare 50 rows in chunks of {k}": bare_chunked,
                "saliscope IG-50": lambda: ig.explain(x, target=c),
                "saliscope IG-50, fresh explainer": lambda: ss.IntegratedGradients(model, n_steps=N).explain(
                    x, target=c
                ),
                f"bare 50 rows in chunks of {k} + fwd of 2": bare_chunked_plus2,
                "SmoothGrad float64 accumulation alone": maps_accumulate,
            },
            device,
            args.repeats,
            args.warmup,
            progress,
        )

    if 5 in sections:
        # 5. explain() bookkeeping ------------------------------------------------------------------------
        from saliscope.core.model_state import explaining

        g = ss.Gradient(model)
        g.explain(x, target=c)

        def explaining_only() -> None:
            with explaining(model):
                pass

        print("5. explain() bookkeeping", flush=True)
        out["bookkeeping"] = interleaved(
            {
                "bare fwd+bwd, params frozen": lambda: _frozen_grad(model, x, c),
                "bare fwd+bwd, params frozen, input converted to channels_last": lambda: _frozen_grad(
                    model, x.contiguous(memory_format=torch.channels_last), c
                ),
                "saliscope Gradient": lambda: g.explain(x, target=c),
                "explaining() alone": explaining_only,
            },
            device,
            max(args.repeats * 6, 20),
            args.warmup + 2,
            progress=None,
        )

    if 6 in sections and device.type == "cpu":
        # 6. channels_last input (what input_gradients does on CPU) vs contiguous -------------------------
        from saliscope.core import memory_layout as layout_mod

        def contiguous(fn: Any) -> Any:
            def call() -> Any:
                layout_mod._CHANNELS_LAST[model] = False
                try:
                    return fn()
                finally:
                    layout_mod._CHANNELS_LAST[model] = True

            return call

        explainers = {
            "Gradient": ss.Gradient(model),
            "SmoothGrad-50": ss.SmoothGrad(ss.Gradient(model), n_samples=N, seed=0),
            "IG-50": ss.IntegratedGradients(model, n_steps=N),
        }
        fns = {}
        diffs = {}
        for name, e in explainers.items():
            run = (lambda e: lambda: e.explain(x, target=c))(e)
            a, b = run().attributions, contiguous(run)().attributions
            diffs[name] = {"max_abs_diff": float((a - b).abs().max()), "max_abs": float(a.abs().max())}
            fns[f"{name} (channels_last input, the default)"] = run
            fns[f"{name}, contiguous input"] = contiguous(run)
        print("6. channels_last input", flush=True)
        out["cl_input"] = interleaved(fns, device, args.repeats, args.warmup, progress)
        out["cl_input_diffs"] = diffs

    if 7 in sections:
        # 7. no-grad forward: layout and the inference copy ------------------------------------------------
        import torchvision

        from saliscope.core.inference_copy import inference_copy

        nets = {"default": model, "resnet50": torchvision.models.resnet50().eval().to(device)}
        fold_sizes = tuple(args.sizes) if args.sizes else (4, 16)
        out["fold"], out["fold_diffs"], out["fold_sizes"] = {}, {}, fold_sizes
        for net_name, net in nets.items():
            cl = (lambda t: t.contiguous(memory_format=torch.channels_last)) if device.type == "cpu" else (lambda t: t)
            folded = inference_copy(net, cl(x))
            assert folded is not None, f"{net_name}: nothing folded"
            fns = {}
            for b in fold_sizes:
                xb = x.expand(b, -1, -1, -1).contiguous() + 0.01 * torch.randn(b, *shape, device=device)
                fns[f"{net_name} b={b}: contiguous"] = (lambda xb: lambda: _no_grad(net, xb))(xb)
                fns[f"{net_name} b={b}: channels_last input"] = (lambda xb: lambda: _no_grad(net, xb))(cl(xb))
                fns[f"{net_name} b={b}: inference copy, channels_last input"] = (
                    lambda xb: lambda: _no_grad(folded, xb)
                )(cl(xb))
            with torch.no_grad():
                ref, got = net(x), folded(cl(x))
            out["fold_diffs"][net_name] = {
                "max_abs_diff": float((ref - got).abs().max()),
                "max_abs": float(ref.abs().max()),
            }
            print(f"7. no-grad forward, {net_name}", flush=True)
            out["fold"].update(interleaved(fns, device, args.repeats, args.warmup, progress))
            del folded

    if 8 in sections:
        # 8. the blur fill and PNG encoding ------------------------------------------------------------------
        from torchvision.transforms.functional import gaussian_blur

        from saliscope.methods import Blur
        from saliscope.viz.files import PNG_COMPRESS_LEVEL, png_bytes

        rows = x.expand(4, -1, -1, -1).contiguous()
        blur = Blur(sigma=10.0)
        k = blur.kernel_size(min(rows.shape[-2:]))
        fns = {
            "blur fill, 4 rows: square window (torchvision)": lambda: gaussian_blur(rows, [k, k], [blur.sigma] * 2),
            "blur fill, 4 rows: two 1-D passes (saliscope)": lambda: blur(rows, model),
        }
        square = fns["blur fill, 4 rows: square window (torchvision)"]()
        out["blur_max_abs_diff"] = float((square - blur(rows, model)).abs().max())
        pictures = _demo_pictures(model, x, c)
        levels = (6, PNG_COMPRESS_LEVEL)  # Pillow's default, saliscope's
        for level in levels:
            fns[f"PNG, zlib level {level}"] = (lambda n: lambda: [png_bytes(p, level=n) for p in pictures])(level)
        out["png_bytes"] = {n: sum(len(png_bytes(p, level=n)) for p in pictures) for n in levels}
        print("8. blur fill and PNG encoding", flush=True)
        out["writing"] = interleaved(fns, device, args.repeats, args.warmup, progress)

    env["load_after"] = loadavg()
    md = render(env, out)
    print()
    print(md)
    md_path, js_path = write_results(f"tricks-{device.type}", md, {"environment": env, **out})
    print(f"written: {md_path}  {js_path}")
    return out


def _demo_pictures(model: torch.nn.Module, x: torch.Tensor, c: int) -> list[Any]:
    """Chelsea's Gradient overlay and a four-method panel, as the demo writes them, as PIL images."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    import saliscope as ss
    from saliscope.io import sample_images
    from saliscope.viz import display_hint, overlay, panel

    image = sample_images()["chelsea"]
    box = tuple(float(v) for v in model.preprocess.crop_box(*image.size))  # type: ignore[operator, union-attr]
    columns = []
    for method in (ss.Gradient(model), ss.GradCAM(model)):
        hint = display_hint(method.name)
        saliency = method.explain(x.cpu(), c).saliency(hint.reduce, hint.evidence)[0, 0]
        columns += [(method.name, saliency, hint.signed)] * 2
    picture = overlay(image, columns[0][1], crop_box=box, signed=columns[0][2])
    canvas = FigureCanvasAgg(panel(image, columns, crop_box=box, title="chelsea"))
    canvas.draw()  # drawn once: the race below is the encoding alone
    return [picture, Image.fromarray(np.asarray(canvas.buffer_rgba()))]


def _no_grad(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def _frozen_grad(model: torch.nn.Module, x: torch.Tensor, c: int) -> torch.Tensor:
    with frozen(model):
        return input_grad(model, x, c)


def _table(results: dict[str, Any], unit_rows: dict[str, int] | None = None) -> list[str]:
    lines = ["| variant | median s | min s | process CPU s | minor faults |", "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {fmt(r['median'])} | {fmt(r['min'])} | {r['cpu_median']:.3f} | {r['minflt_median']:.0f} |"
        )
    return lines


def render(env: dict[str, Any], out: dict[str, Any]) -> str:
    lines = [
        f"## Where the time goes — {env['device_name']} ({env['device']})",
        "",
        f"torch {env['torch']}, threads {env['torch_threads']}, model: {env['model']}; median of {env['repeats']} "
        f"after {env['warmup']} warm-up, round-robin; load {env['load_before']} → {env['load_after']}.",
        "",
    ]
    if "frozen" in out:
        sb = out["saved_bytes_per_row"]
        lines += [
            f"### 1. Frozen parameters — saved activations per row: frozen {sb['frozen'] / 2**20:.2f} MiB, "
            f"requires_grad {sb['requires_grad'] / 2**20:.2f} MiB",
            "",
            *_table(out["frozen"]),
            "",
        ]
    if "channels_last" in out:
        lines += [
            f"### 2. channels_last — gradient max |Δ| {out['channels_last_max_abs_diff']:.2e}, "
            f"relative L2 {out['channels_last_rel_diff']:.2e}",
            "",
            *_table(out["channels_last"]),
            "",
        ]
    if "noise" in out:
        lines += ["### 3. SmoothGrad noise for 50 samples", "", *_table(out["noise"]), ""]
    if "overheads" in out:
        lines += [f"### 4. Overheads (chunk {out['overheads_chunk']})", "", *_table(out["overheads"]), ""]
    if "bookkeeping" in out:
        lines += ["### 5. explain() bookkeeping", "", *_table(out["bookkeeping"]), ""]
    if "cl_input" in out:
        d = "; ".join(
            f"{k} max |Δ| {v['max_abs_diff']:.1e} (max |attr| {v['max_abs']:.1e})"
            for k, v in out["cl_input_diffs"].items()
        )
        lines += ["### 6. channels_last input (model untouched) vs contiguous — " + d, "", *_table(out["cl_input"]), ""]
    if "fold" in out:
        d = "; ".join(
            f"{k} output max |Δ| {v['max_abs_diff']:.1e} (max |logit| {v['max_abs']:.1f})"
            for k, v in out["fold_diffs"].items()
        )
        lines += [
            "### 7. No-grad forward: contiguous, channels_last input, inference copy — " + d,
            "",
            *_table(out["fold"]),
            "",
        ]
        for net_name in ("default", "resnet50"):
            for b in out["fold_sizes"]:
                base = out["fold"].get(f"{net_name} b={b}: contiguous")
                if base is None:
                    continue
                ratios = ", ".join(
                    f"{how} {base['median'] / out['fold'][f'{net_name} b={b}: {how}']['median']:.2f}×"
                    for how in ("channels_last input", "inference copy, channels_last input")
                )
                lines.append(f"- {net_name}, {b} rows: contiguous / {ratios}")
        lines.append("")
    if "writing" in out:
        sizes = ", ".join(f"level {k}: {v / 1e6:.2f} MB" for k, v in out["png_bytes"].items())
        lines += [
            f"### 8. Blur fill (max |Δ| {out['blur_max_abs_diff']:.1e}) and PNG encoding (overlay + panel; {sizes})",
            "",
            *_table(out["writing"]),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
