"""What the comparison chart's faithfulness row gives maps that know nothing: random maps, pixel noise to smooth.

    PYTHONPATH=src python bench/random_maps.py [--maps 10] [--images chelsea coffee astronaut rocket]

The row is insertion AUC − deletion AUC, both over ``Thresholds.deletion_steps`` steps and divided by the
clean probability (``saliscope.trust.compare_methods``). A map that carries no information should score about
0 — but smooth random maps remove compact regions, and a curve can move differently when a region goes
than when scattered pixels go. This measures the distribution, per kind of random map, on the default model
and the sample photos' predicted classes:

- ``pixels``: uniform noise per pixel;
- ``cells-K``: a K×K grid of uniform noise, upsampled bilinearly (K = 7 is a CAM's grid on this model);
- ``blobs``: pixel noise smoothed by a Gaussian of 8 px.

Prints mean, standard deviation, 5th / 50th / 95th percentiles and the extremes per kind, and all kinds
together; writes ``bench/results/random-maps.json``. The chart's bands are set from it.
"""

from __future__ import annotations

import argparse
import json

import torch
from _common import RESULTS, loadavg
from torch.nn import functional as F


def random_maps(kind: str, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    if kind == "pixels":
        return torch.rand(n, 1, size, size, generator=generator)
    if kind.startswith("cells-"):
        k = int(kind.split("-")[1])
        cells = torch.rand(n, 1, k, k, generator=generator)
        return F.interpolate(cells, size=(size, size), mode="bilinear", align_corners=False)
    if kind == "blobs":
        from torchvision.transforms.functional import gaussian_blur

        return gaussian_blur(torch.rand(n, 1, size, size, generator=generator), [49, 49], [8.0, 8.0])
    raise SystemExit(f"unknown kind {kind}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maps", type=int, default=10, help="random maps per kind and image")
    ap.add_argument("--images", nargs="*", default=["chelsea", "coffee", "astronaut", "rocket"])
    ap.add_argument("--kinds", nargs="*", default=["pixels", "cells-7", "cells-14", "cells-28", "blobs"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import saliscope as ss
    from saliscope.metrics import deletion, insertion
    from saliscope.trust import Thresholds

    steps = Thresholds().deletion_steps
    model = ss.load_model()
    photos = ss.sample_images()
    generator = torch.Generator().manual_seed(args.seed)
    scores: dict[str, list[float]] = {kind: [] for kind in args.kinds}
    for name in args.images:
        x = model.preprocess(photos[name])
        c = int(model(x).argmax())
        for kind in args.kinds:
            maps = random_maps(kind, args.maps, int(x.shape[-1]), generator)
            batch = x.expand(args.maps, -1, -1, -1)
            removed = deletion(model, batch, maps, c, steps=steps, seed=args.seed).normalized_auc
            inserted = insertion(model, batch, maps, c, steps=steps, seed=args.seed).normalized_auc
            faithfulness = (inserted - removed).tolist()
            scores[kind].extend(faithfulness)
            print(f"{name:10} {kind:9} " + " ".join(f"{v:+.3f}" for v in faithfulness) + f"  (load {loadavg()})")
    table = {}
    everything = [v for values in scores.values() for v in values]
    for kind, values in [*scores.items(), ("all", everything)]:
        t = torch.tensor(values)
        table[kind] = {
            "n": len(values),
            "mean": float(t.mean()),
            "std": float(t.std()),
            "p5": float(t.quantile(0.05)),
            "p50": float(t.quantile(0.5)),
            "p95": float(t.quantile(0.95)),
            "min": float(t.min()),
            "max": float(t.max()),
        }
    print("\n| random map | n | mean | std | 5% | median | 95% | min | max |\n|---|---|---|---|---|---|---|---|---|")
    for kind, s in table.items():
        print(
            f"| {kind} | {s['n']} | {s['mean']:+.3f} | {s['std']:.3f} | {s['p5']:+.3f} | {s['p50']:+.3f} | "
            f"{s['p95']:+.3f} | {s['min']:+.3f} | {s['max']:+.3f} |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "random-maps.json").write_text(json.dumps({"table": table, "scores": scores}, indent=2))


if __name__ == "__main__":
    main()
