"""Helpers shared by the benchmark scripts in ``bench/`` (not part of the library)."""

from __future__ import annotations

import json
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

RESULTS = Path(__file__).resolve().parent / "results"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    import os

    info: dict[str, Any] = {
        "torch": torch.__version__,
        "device": device.type,
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import captum

        info["captum"] = captum.__version__
    except ImportError:
        pass
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:
        pass
    return info


def load_model(device: torch.device) -> tuple[nn.Module, str]:
    """``saliscope.load_model()`` when it works, else timm's tf_efficientnet_lite0 with random weights.

    Timing does not depend on the weights, only on the architecture, and both are EfficientNet-Lite0.
    """
    try:
        import saliscope as ss

        model = ss.load_model()
        how = "saliscope.load_model()"
    except Exception as exc:
        import timm

        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        how = f"timm tf_efficientnet_lite0, random weights (load_model failed: {type(exc).__name__}: {exc})"
    return model.eval().to(device), how


def load_input(model: nn.Module, device: torch.device) -> Tensor:
    """``skimage.data.chelsea()`` → (1, 3, 224, 224) in model space."""
    from skimage import data

    image = data.chelsea()
    preprocess = getattr(model, "preprocess", None)
    if preprocess is None:
        try:
            from saliscope.models.default import DEFAULT_PREPROCESS

            preprocess = DEFAULT_PREPROCESS
        except Exception:
            preprocess = None
    if preprocess is not None:
        try:
            from PIL import Image

            x = preprocess(Image.fromarray(image))
            return x.reshape(1, 3, 224, 224).to(device)
        except Exception:
            pass
    from PIL import Image

    img = Image.fromarray(image)
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((int(w * s), int(h * s)), Image.Resampling.BICUBIC)
    w, h = img.size
    left, top = round((w - 224) / 2), round((h - 224) / 2)
    arr = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
    t = torch.from_numpy(arr).permute(2, 0, 1)
    t = (t - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return t.unsqueeze(0).contiguous().to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _summary(times: list[float], cpu: list[float], faults: list[int]) -> dict[str, Any]:
    return {
        "median": statistics.median(times),
        "min": min(times),
        "times": times,
        "cpu_median": statistics.median(cpu),
        "minflt_median": statistics.median(faults),
    }


def measure(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` calls (synchronised on CUDA)."""
    return interleaved({"fn": fn}, device, repeats, warmup)["fn"]


def interleaved(
    fns: dict[str, Callable[[], Any]],
    device: torch.device,
    repeats: int,
    warmup: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Time every function ``repeats`` times, round-robin (one call of each per round).

    Round-robin spreads any background load or thermal drift evenly over the variants being compared,
    instead of penalising whichever happened to run while the machine was busy. The start of each round
    rotates so no variant always runs first. Returns per name: median / min wall seconds, all times, and
    the median process CPU seconds (user + system) and minor page faults per call.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    faults: dict[str, list[int]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            sync(device)
            f0, c0, t0 = minor_faults(), cpu_seconds(), time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(cpu_seconds() - c0)
            faults[name].append(minor_faults() - f0)
        if progress:
            progress(f"  round {r + 1}/{repeats} done (load {loadavg()})")
    return {n: _summary(times[n], cpu[n], faults[n]) for n in names}


class frozen:
    """Temporarily set ``requires_grad=False`` on every parameter (restored on exit)."""

    def __init__(self, model: nn.Module, on: bool = True) -> None:
        self.model, self.on = model, on
        self.saved: list[tuple[Tensor, bool]] = []

    def __enter__(self) -> nn.Module:
        self.saved = [(p, p.requires_grad) for p in self.model.parameters()]
        if self.on:
            for p, _ in self.saved:
                p.requires_grad_(False)
        return self.model

    def __exit__(self, *exc: object) -> None:
        for p, r in self.saved:
            p.requires_grad_(r)


def input_grad(model: nn.Module, x: Tensor, target: int) -> Tensor:
    """The bare reference: one forward, ``autograd.grad`` of the target logit(s) w.r.t. the input."""
    xr = x.detach().requires_grad_(True)
    out = model(xr)[:, target].sum()
    (g,) = torch.autograd.grad(out, xr)
    return g


def write_results(stem: str, markdown: str, payload: dict[str, Any]) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    md, js = RESULTS / f"{stem}.md", RESULTS / f"{stem}.json"
    md.write_text(markdown)
    js.write_text(json.dumps(payload, indent=2, default=str))
    return md, js


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds:.4f}" if seconds < 1 else f"{seconds:.3f}"
