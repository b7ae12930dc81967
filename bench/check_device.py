"""Every registered method on a GPU against the same method on the CPU: same maps, model left as found.

    PYTHONPATH=src python bench/check_device.py [--device cuda]

Not a benchmark and not a test (the suite must pass without a GPU): a check to run when one is lent.
Prints one line per method with the relative L2 difference of the maps and the cosine similarity of the
channel-summed maps, and exits non-zero if any map is not finite or the two devices disagree.
"""

from __future__ import annotations

import argparse
import sys

import torch

import saliscope as ss
from saliscope import registry
from saliscope.registry import MethodOptions


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    model = ss.load_model()
    images = ss.sample_images()
    x = model.preprocess([images["chelsea"], images["coffee"]])
    gpu_model = ss.load_model().to(args.device)
    before = [(n, p.requires_grad) for n, p in gpu_model.named_parameters()]
    options = MethodOptions(seed=0, n_samples=16, n_steps=16)
    failures = 0
    print(
        f"device {torch.cuda.get_device_name() if args.device.startswith('cuda') else args.device},"
        f" torch {torch.__version__}"
    )
    for name in registry.available():
        if registry.get(name).needs_detector:
            continue  # D-RISE explains a detector's detections, not this classifier's classes
        cpu = registry.create(name, model, options).explain(x, target="predicted")
        gpu = registry.create(name, gpu_model, options).explain(x.to(args.device), target="predicted")
        a, b = cpu.attributions, gpu.attributions.cpu()
        rel = float((a - b).norm() / a.norm())
        cos = float(torch.nn.functional.cosine_similarity(a.sum(1).flatten(1), b.sum(1).flatten(1)).min())
        same_class = cpu.classes.tolist() == gpu.classes.tolist()
        # Noise methods draw on the device (different streams on CPU and CUDA): compare them by cosine only.
        noisy = "seed" in gpu.params
        ok = bool(torch.isfinite(b).all()) and same_class and (cos > 0.5 if noisy else rel < 0.05)
        failures += not ok
        gap = "" if gpu.completeness_gap is None else f" gap {gpu.completeness_gap.abs().max().item():.2e}"
        print(
            f"{'ok ' if ok else 'BAD'} {name:22s} rel L2 {rel:.2e}  min cosine {cos:.4f}  "
            f"{gpu.cost.seconds:.3f}s on {args.device}, peak {gpu.cost.peak_memory_bytes or 0:,} B{gap}"
        )
    after = [(n, p.requires_grad) for n, p in gpu_model.named_parameters()]
    if before != after or gpu_model.training:
        print("BAD the model was changed")
        failures += 1
    half = ss.Gradient(ss.load_model().to(args.device).half()).explain(x.to(args.device).half(), target=282)
    print(
        f"half-precision model explained in {half.attributions.dtype},"
        f" finite: {bool(torch.isfinite(half.attributions).all())}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
