"""What Score-CAM's ``max_channels`` top-k saves, and what it costs the map, on the default model.

    PYTHONPATH=src python bench/scorecam_topk.py [--k 64 128 256 512] [--images chelsea coffee astronaut rocket]

For each photo (its predicted class) Score-CAM scores every channel of ``bn2`` once (the reference), then only
the k channels of largest mean activation. Per k, medians over the photos: forward passes, seconds, Pearson r of
the layer map with the reference, overlap (IoU) of the top 10% pixels of the upsampled maps, and the faithfulness
both maps earn (insertion − deletion AUC, 50 steps, blur, each normalised by the clean score).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import saliscope as ss
from saliscope import metrics


def top_iou(a: torch.Tensor, b: torch.Tensor, share: float = 0.1) -> float:
    k = max(1, int(share * a.numel()))
    ia, ib = set(a.flatten().topk(k).indices.tolist()), set(b.flatten().topk(k).indices.tolist())
    return len(ia & ib) / len(ia | ib)


def faithfulness(model: torch.nn.Module, x: torch.Tensor, e: ss.Explanation) -> float:
    deletion = metrics.deletion(model, x, e, steps=50).normalized_auc
    insertion = metrics.insertion(model, x, e, steps=50).normalized_auc
    return float(insertion - deletion)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k", type=int, nargs="*", default=[64, 128, 256, 512])
    ap.add_argument("--images", nargs="*", default=["chelsea", "coffee", "astronaut", "rocket"])
    args = ap.parse_args()
    model = ss.load_model()
    photos = ss.sample_images()
    rows: dict[str, dict[str, list[float]]] = {}
    for name in args.images:
        x = model.preprocess([photos[name]])
        ref_explainer = ss.ScoreCAM(model)
        ref_explainer.explain(x)  # warm-up: the layer probe, the chunk size
        start = time.perf_counter()
        ref = ref_explainer.explain(x)
        ref_seconds = time.perf_counter() - start
        ref_faith = faithfulness(model, x, ref)
        settings = [("all", ref, ref_seconds)]
        for k in args.k:
            explainer = ss.ScoreCAM(model, max_channels=k)
            explainer.explain(x)
            start = time.perf_counter()
            e = explainer.explain(x)
            settings.append((str(k), e, time.perf_counter() - start))
        for label, e, seconds in settings:
            row = rows.setdefault(label, {m: [] for m in ("passes", "seconds", "r", "iou", "faith", "ref_faith")})
            a, b = e.extras["layer_map"].flatten().double(), ref.extras["layer_map"].flatten().double()
            row["passes"].append(e.cost.forward_passes)
            row["seconds"].append(seconds)
            row["r"].append(float(torch.corrcoef(torch.stack([a, b]))[0, 1]))
            row["iou"].append(top_iou(e.attributions, ref.attributions))
            row["faith"].append(ref_faith if label == "all" else faithfulness(model, x, e))
            row["ref_faith"].append(ref_faith)
        print(f"{name}: done", flush=True)
    print(
        f"\nimages: {', '.join(args.images)}; medians over them (torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)\n"
    )
    print(
        "| channels scored | forward passes | seconds | Pearson r with all | top-10% IoU with all | "
        "insertion − deletion (all: same) |"
    )
    print("|---|---|---|---|---|---|")
    med = statistics.median
    for label, row in rows.items():
        print(
            f"| {label} | {med(row['passes']):.0f} | {med(row['seconds']):.2f} | {med(row['r']):.3f} | "
            f"{med(row['iou']):.2f} | {med(row['faith']):+.3f} ({med(row['ref_faith']):+.3f}) |"
        )


if __name__ == "__main__":
    main()
