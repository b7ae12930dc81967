"""Toy models and explainers for the robustness and sanity tests: their answers are known by construction."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from saliscope.core.cost import CostMeter
from saliscope.core.targets import BoundTarget
from saliscope.methods.base import Attribution, Explainer


class LinearImage(nn.Module):
    """scores = W · flatten(x) + b on (C, H, W) images: the gradient is W[class], whatever x is."""

    def __init__(self, c: int = 3, h: int = 8, w: int = 8, k: int = 4, seed: int = 0) -> None:
        super().__init__()
        self.shape = (c, h, w)
        self.fc = nn.Linear(c * h * w, k)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(k, c * h * w, generator=g))
            self.fc.bias.copy_(torch.arange(k, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))

    def weight_map(self, k: int) -> torch.Tensor:
        return self.fc.weight[k].detach().view(1, *self.shape)


class Energy(nn.Module):
    """Class 0 is sum(x²), class 1 its negative: the gradient 2x moves, flips and shifts with the image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = (x**2).flatten(1).sum(1)
        return torch.stack([e, -e], dim=1)


class Sobel(Explainer):
    """An "explainer" that ignores the model: the Sobel edge magnitude of the image (channels averaged).

    Adebayo et al. 2018 showed that some real methods behave much like this; the sanity checks must
    flag it.
    """

    name: ClassVar[str] = "sobel"

    def _attribute(self, net: nn.Module, x: torch.Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        gray = x.mean(1, keepdim=True)
        kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
        gx = F.conv2d(gray, kx, padding=1)
        gy = F.conv2d(gray, kx.transpose(-1, -2), padding=1)
        return Attribution((gx**2 + gy**2).sqrt())
