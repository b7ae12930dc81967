"""Baselines for path methods: the "absence of signal" a path starts from."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import InputError, MethodError


class Baseline(ABC):
    """Makes a baseline batch ``(B, C, H, W)`` for an input batch in model space."""

    @abstractmethod
    def __call__(self, x: Tensor, model: nn.Module) -> Tensor: ...

    @abstractmethod
    def describe(self) -> str: ...


@dataclass(frozen=True)
class Zero(Baseline):
    """All zeros in model space (for ImageNet-normalised inputs: the mean colour)."""

    def __call__(self, x: Tensor, model: nn.Module) -> Tensor:
        return torch.zeros_like(x)

    def describe(self) -> str:
        return "zero"


@dataclass(frozen=True)
class Black(Baseline):
    """A black image, mapped into model space with the model's normalisation (``model.preprocess``)."""

    def __call__(self, x: Tensor, model: nn.Module) -> Tensor:
        preprocess = getattr(model, "preprocess", None)
        normalize = getattr(preprocess, "normalize", None)
        if normalize is None:
            raise MethodError(
                "the 'black' baseline needs the model's normalisation, and this model carries none",
                "load the model with saliscope.load_model, or pass baseline='zero' or a baseline tensor",
            )
        black = normalize(torch.zeros(1, x.shape[1], 1, 1))
        return black.to(device=x.device, dtype=x.dtype).expand_as(x).clone()

    def describe(self) -> str:
        return "black"


@dataclass(frozen=True)
class Blur(Baseline):
    """The input blurred by a Gaussian of ``sigma`` pixels (Sturmfels et al. 2020, "Visualizing the
    Impact of Feature Attribution Baselines"): removes detail but keeps colour and layout."""

    sigma: float = 10.0

    def __call__(self, x: Tensor, model: nn.Module) -> Tensor:
        if self.sigma <= 0:
            raise MethodError(f"blur sigma must be > 0, got {self.sigma}", "use e.g. Blur(sigma=10)")
        return gaussian_blur(x, self.kernel_size(min(x.shape[-2:])), self.sigma)

    def kernel_size(self, side: int) -> int:
        """The window's odd width on an image whose shorter side is ``side``: ±3 sigma, capped to the image."""
        return min(2 * math.ceil(3 * self.sigma) + 1, side - 1 if side % 2 == 0 else side)

    def describe(self) -> str:
        return f"blur(sigma={self.sigma})"


def gaussian_blur(x: Tensor, kernel: int, sigma: float) -> Tensor:
    """``x`` ``(B, C, H, W)`` under a Gaussian of ``sigma`` pixels on an odd ``kernel``-wide window, the border
    reflected: torchvision's ``gaussian_blur``, to float rounding, as two 1-D passes. The Gaussian is
    separable, so a row pass then a column pass cost ``2k`` multiplies a pixel where the square window
    costs ``k²`` (61 px for sigma 10: ten times faster on a CPU)."""
    half = (kernel - 1) / 2
    taps = torch.exp(-0.5 * (torch.linspace(-half, half, kernel, dtype=x.dtype, device=x.device) / sigma) ** 2)
    taps = taps / taps.sum()
    c, pad = int(x.shape[1]), kernel // 2
    out = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, taps.view(1, 1, 1, kernel).expand(c, 1, 1, kernel), groups=c)
    return F.conv2d(out, taps.view(1, 1, kernel, 1).expand(c, 1, kernel, 1), groups=c)


@dataclass(frozen=True)
class UniformNoise(Baseline):
    """Uniform noise between each image's per-channel minimum and maximum, seeded.

    Every image of a batch draws the same noise pattern (scaled to its own range), so a batch is
    explained exactly as each image alone.
    """

    seed: int = 0

    def __call__(self, x: Tensor, model: nn.Module) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        # Drawn on the CPU so that the same seed gives the same baseline on every device.
        u = torch.rand(x.shape[1:], generator=generator, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
        low = x.amin(dim=(2, 3), keepdim=True)
        high = x.amax(dim=(2, 3), keepdim=True)
        return low + (high - low) * u

    def describe(self) -> str:
        return f"uniform(seed={self.seed})"


@dataclass(frozen=True, eq=False)
class Given(Baseline):
    """A baseline tensor the user supplies: ``(C, H, W)``, ``(1, C, H, W)`` or ``(B, C, H, W)``."""

    tensor: Tensor

    def __call__(self, x: Tensor, model: nn.Module) -> Tensor:
        t = self.tensor.to(device=x.device, dtype=x.dtype)
        if t.ndim == 3:
            t = t.unsqueeze(0)
        try:
            return t.expand_as(x).clone()
        except RuntimeError:
            raise InputError(
                f"the baseline has shape {tuple(self.tensor.shape)}, the input {tuple(x.shape)}",
                "give a baseline of shape (C, H, W), (1, C, H, W) or the input's shape",
            ) from None

    def describe(self) -> str:
        return f"tensor{tuple(self.tensor.shape)}"


BaselineName = Literal["zero", "black", "blur", "uniform"]
BaselineLike = Baseline | BaselineName | Tensor
BASELINES: tuple[str, ...] = ("zero", "black", "blur", "uniform")


def as_baseline(spec: BaselineLike) -> Baseline:
    """Turn a name or tensor into a :class:`Baseline`."""
    if isinstance(spec, Baseline):
        return spec
    if isinstance(spec, Tensor):
        return Given(spec)
    named: dict[str, Baseline] = {"zero": Zero(), "black": Black(), "blur": Blur(), "uniform": UniformNoise()}
    if spec in named:
        return named[spec]
    raise MethodError(f"unknown baseline {spec!r}", f"use one of {', '.join(BASELINES)}, or a tensor")
