"""How IG's completeness gap shrinks with steps, per baseline and quadrature rule, on the default model.

    PYTHONPATH=src python bench/ig_gap.py [--images chelsea coffee] [--steps 16 32 64 128]

Prints a markdown table of the relative gap |sum(attr) - (f(x) - f(x'))| / |f(x) - f(x')| (median over
the images) for each baseline x rule x steps, explaining each image's predicted class.
"""

from __future__ import annotations

import argparse
import statistics

import torch

import saliscope as ss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", nargs="*", default=["chelsea", "coffee"])
    ap.add_argument("--steps", type=int, nargs="*", default=[16, 32, 64, 128])
    ap.add_argument("--baselines", nargs="*", default=["black", "zero", "blur"])
    ap.add_argument("--rules", nargs="*", default=["gauss-legendre", "riemann-trapezoid", "riemann-middle"])
    args = ap.parse_args()
    model = ss.load_model()
    photos = ss.sample_images()
    x = model.preprocess([photos[name] for name in args.images])
    print(f"images: {', '.join(args.images)}; cell: median relative completeness gap (torch {torch.__version__})\n")
    print("| baseline | rule | " + " | ".join(f"{n} steps" for n in args.steps) + " |")
    print("|---|---|" + "---|" * len(args.steps))
    for baseline in args.baselines:
        for rule in args.rules:
            cells = []
            for n in args.steps:
                e = ss.IntegratedGradients(model, n_steps=n, baseline=baseline, rule=rule).explain(x)
                change = e.extras["input_scores"] - e.extras["baseline_scores"]
                rel = (e.completeness_gap.abs() / change.abs()).tolist()
                cells.append(f"{100 * statistics.median(rel):.1f}%")
            print(f"| {baseline} | {rule} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
