"""How fast is forward+backward per sample at each chunk size, and which memory budget should Chunker use?

    PYTHONPATH=src python bench/bench_chunks.py                    # CPU
    PYTHONPATH=src python bench/bench_chunks.py --device cuda
    PYTHONPATH=src python bench/bench_chunks.py --malloc-tune      # freed memory kept, as the command does

Part A runs 50 rows (the chelsea image, 50 times) through the default model in chunks of 1, 2, 4, 8, ...
with frozen parameters (as saliscope does) and reports seconds per sample. Part B runs saliscope's IG-50
and SmoothGrad-50 with ``memory_budget`` set to several values, shows the chunk the Chunker picks for
each (budget // measured bytes per row) and times them. All variants of a part run round-robin.
Results: ``bench/results/chunks-<device>[-malloc].{md,json}``.
"""

from __future__ import annotations

import argparse
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

ROWS = 50
SIZES = (1, 2, 4, 5, 8, 10, 16, 25, 50)
CPU_BUDGETS_MIB = (128, 256, 384, 512, 768, 1024, 2048)
GPU_BUDGETS_MIB = (1024, 4096)  # plus the default (a share of free memory)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 4, quick 2)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", type=int, nargs="*", default=None)
    ap.add_argument("--budgets-mib", type=int, nargs="*", default=None)
    ap.add_argument("--skip-budgets", action="store_true", help="only part A")
    ap.add_argument("--malloc-tune", action="store_true", help="keep freed memory first (ss.keep_freed_memory)")
    args = ap.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 4)

    import saliscope as ss

    tuned = ss.keep_freed_memory() if args.malloc_tune else False
    device = pick_device(args.device)
    model, how = load_model(device)
    x = load_input(model, device)
    with torch.no_grad():
        c = int(model(x).argmax(1))
    env = environment(device)
    env.update(model=how, target=c, repeats=repeats, warmup=args.warmup, malloc_tuned=tuned, load_before=loadavg())
    print("# chunk-size study")
    for k, v in env.items():
        print(f"- {k}: {v}")

    # Part A: 50 rows in chunks of b -------------------------------------------------------------
    sizes = tuple(args.sizes) if args.sizes else SIZES
    rows = x.expand(ROWS, -1, -1, -1).contiguous()

    def chunked(b: int) -> Any:
        def run() -> None:
            with frozen(model):
                for start in range(0, ROWS, b):
                    input_grad(model, rows[start : start + b], c)

        return run

    print(f"part A: {ROWS} rows of fwd+bwd in chunks of {sizes} (load {loadavg()})", flush=True)
    A = interleaved(
        {str(b): chunked(b) for b in sizes}, device, repeats, args.warmup, progress=lambda s: print(s, flush=True)
    )
    for b in sizes:
        r = A[str(b)]
        print(
            f"  chunk {b:3d}: {r['median']:.3f} s for {ROWS} rows = {r['median'] / ROWS * 1e3:7.2f} ms/sample "
            f"(cpu {r['cpu_median']:.2f} s, minor faults {r['minflt_median']:.0f})",
            flush=True,
        )

    # What the Chunker measures and would pick by default
    probe = ss.IntegratedGradients(model, n_steps=ROWS)
    probe.explain(x, target=c)
    key = probe.chunk_key(x)
    bytes_per_row = probe.chunker._bytes_per_row[key]
    default_rows = probe.chunker.rows_per_chunk(key, device)
    print(f"Chunker: {bytes_per_row / 2**20:.1f} MiB saved per row; default budget picks {default_rows} rows/chunk")

    # Part B: budgets --------------------------------------------------------------------------
    B: dict[str, Any] = {}
    budget_rows: dict[str, int] = {}
    if not args.skip_budgets:
        mibs: list[int | None] = list(
            args.budgets_mib or (GPU_BUDGETS_MIB if device.type == "cuda" else CPU_BUDGETS_MIB)
        )
        mibs.append(None)  # the default
        fns: dict[str, Any] = {}
        for mib in mibs:
            budget = None if mib is None else mib * 2**20
            name = "default" if mib is None else f"{mib} MiB"
            ig = ss.IntegratedGradients(model, n_steps=ROWS, memory_budget=budget)
            sg = ss.SmoothGrad(ss.Gradient(model, memory_budget=budget), n_samples=ROWS, seed=0)
            ig.explain(x, target=c)
            sg.explain(x, target=c)  # measures a row's bytes, so the chunk is known below
            budget_rows[name] = int(ig.chunker.rows_per_chunk(key, device) or 0)
            fns[f"IG {name}"] = (lambda e: lambda: e.explain(x, target=c))(ig)
            fns[f"SG {name}"] = (lambda e: lambda: e.explain(x, target=c))(sg)
        print(f"part B: budgets {list(budget_rows)} -> rows/chunk {list(budget_rows.values())}", flush=True)
        B = interleaved(fns, device, repeats, args.warmup, progress=lambda s: print(s, flush=True))

    env["load_after"] = loadavg()
    md = render(env, sizes, A, bytes_per_row, default_rows, budget_rows, B)
    print()
    print(md)
    stem = f"chunks-{device.type}" + ("-malloc" if tuned else "")
    payload = {
        "environment": env,
        "part_a": A,
        "bytes_per_row": bytes_per_row,
        "default_rows": default_rows,
        "budget_rows": budget_rows,
        "part_b": B,
    }
    md_path, js_path = write_results(stem, md, payload)
    print(f"written: {md_path}  {js_path}")
    return payload


def render(
    env: dict[str, Any],
    sizes: tuple[int, ...],
    A: dict[str, Any],
    bytes_per_row: int,
    default_rows: int | None,
    budget_rows: dict[str, int],
    B: dict[str, Any],
) -> str:
    best = min(sizes, key=lambda b: A[str(b)]["median"])
    lines = [
        f"## Forward+backward throughput by chunk size — {env['device_name']} ({env['device']})",
        "",
        f"torch {env['torch']}, threads {env['torch_threads']}, model: {env['model']}; malloc tuned: "
        f"{env['malloc_tuned']}; median of {env['repeats']} rounds after {env['warmup']} warm-up, round-robin; "
        f"load {env['load_before']} → {env['load_after']}.",
        "",
        f"{ROWS} rows, parameters frozen. Chunker: {bytes_per_row / 2**20:.1f} MiB saved activations per row; "
        f"the default budget picks **{default_rows}** rows per chunk.",
        "",
        "| chunk | s for 50 rows | ms / sample | vs best | process CPU s | minor page faults |",
        "|---|---|---|---|---|---|",
    ]
    for b in sizes:
        r = A[str(b)]
        mark = " ←default" if b == default_rows else ""
        lines.append(
            f"| {b}{mark} | {fmt(r['median'])} | {r['median'] / ROWS * 1e3:.2f} | "
            f"{r['median'] / A[str(best)]['median']:.2f}× | {r['cpu_median']:.2f} | "
            f"{r['minflt_median']:.0f} |"
        )
    if B:
        lines += [
            "",
            "saliscope IG-50 / SmoothGrad-50 by memory budget (rows per chunk as the Chunker picks):",
            "",
            "| budget | rows/chunk | IG-50 s | SmoothGrad-50 s |",
            "|---|---|---|---|",
        ]
        for name, nrows in budget_rows.items():
            lines.append(f"| {name} | {nrows} | {fmt(B[f'IG {name}']['median'])} | {fmt(B[f'SG {name}']['median'])} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
