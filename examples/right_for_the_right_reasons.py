"""Right for the right reasons on the built-in shortcut benchmark.

Generates the benchmark (every "pneumonia" training image carries a white square in the top-left
corner; the real signal is a faint striped texture), trains a tiny CNN twice — plainly, and with the
right-for-the-right-reasons penalty on the square's region (Ross, Hughes & Doshi-Velez 2017) — and
prints each model's accuracy on the test set and on the swapped test set, where the square sits on
the *other* class. A model that learned the shortcut collapses there; one that learned the texture
does not.

    PYTHONPATH=src python examples/right_for_the_right_reasons.py            # about a minute on 2 CPU cores
    PYTHONPATH=src python examples/right_for_the_right_reasons.py --kind gradcam

With ``--out DIR`` the benchmark and both models are kept: each model is written with ``saliscope.save_model``
(weights, architecture, preprocessing and labels as plain data, loaded safely without ``--trust-pickle``), and
the script prints the ``saliscope audit`` commands that show where each model looks:

    PYTHONPATH=src python examples/right_for_the_right_reasons.py --out rrr
    saliscope audit rrr/data/test --model rrr/plain.pt --out rrr/audit-plain
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import saliscope as ss
from saliscope.datasets import Artefact, make_shortcut_dataset
from saliscope.train import DEFAULT_WEIGHT, evaluate_accuracy, train_tiny_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artefact", choices=("square", "tag", "stripe"), default="square")
    parser.add_argument("--kind", choices=("gradient", "gradcam"), default="gradient", help="RRR penalty")
    parser.add_argument("--weight", type=float, default=None, help="penalty weight (default per kind)")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the data and the saved models in this folder")
    args = parser.parse_args()
    weight = DEFAULT_WEIGHT[args.kind] if args.weight is None else args.weight
    position = "top" if args.artefact == "stripe" else "top-left"

    rows, saved = [], []
    kept = contextlib.nullcontext(str(args.out)) if args.out is not None else tempfile.TemporaryDirectory()
    with kept as folder:
        root = Path(folder)
        data = make_shortcut_dataset(
            root / "data", artefact=Artefact(kind=args.artefact, position=position), seed=args.seed
        )
        runs = {
            "plain": {},
            f"RRR ({args.kind}, weight {weight:g})": {
                "rrr_weight": weight,
                "irrelevant_mask": data.artefact_mask(),
                "rrr_kind": args.kind,
            },
        }
        for name, extra in runs.items():
            start = time.perf_counter()
            model = train_tiny_cnn(data.train, epochs=args.epochs, seed=args.seed, progress=True, **extra)
            seconds = time.perf_counter() - start
            rows.append(
                (name, evaluate_accuracy(model, data.test), evaluate_accuracy(model, data.test_swapped), seconds)
            )
            if args.out is not None:  # saliscope's own format: safe to load, preprocessing and labels included
                saved.append(ss.save_model(model, root / ("plain.pt" if name == "plain" else "rrr.pt")))

    print(
        f"shortcut benchmark: {args.artefact} on every '{data.shortcut_class}' training image, "
        f"{len(data.classes)} classes, {data.image_size}px, seed {args.seed}"
    )
    print(f"{'training':<32} {'test':>6} {'swapped':>8} {'train s':>8}")
    for name, clean, swapped, seconds in rows:
        print(f"{name:<32} {clean:>6.3f} {swapped:>8.3f} {seconds:>8.1f}")
    for path in saved:
        report = path.with_name(f"audit-{path.stem}")
        print(f"saved {path}; audit it with: saliscope audit {data.test} --model {path} --out {report}")


if __name__ == "__main__":
    main()
