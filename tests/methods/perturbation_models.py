"""Toy models for the perturbation tests: their evidence is known by construction."""

from __future__ import annotations

import torch
from torch import nn


class QuadrantEnergy(nn.Module):
    """Class 0 is the energy of the top-left quadrant, sum of x²; class 1 is constant. Reads nothing else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        energy = (x[:, :, :h, :w] ** 2).flatten(1).sum(1)
        return torch.stack([energy, torch.ones_like(energy)], dim=1)


class RegionReader(nn.Module):
    """Class 0 is the energy (sum of x²) of the pixels of one region (a fixed (H, W) boolean mask)."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("region", region.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x**2 * self.region).flatten(1).sum(1)
        return torch.stack([score, -score], dim=1)


class SuperpixelAdditive(nn.Module):
    """``f(x) = sum_k a_k * mean of channel 0 over superpixel k``: exactly additive over the superpixels."""

    def __init__(self, labels: torch.Tensor, coefficients: torch.Tensor) -> None:
        super().__init__()
        onehot = nn.functional.one_hot(labels.flatten(), int(labels.max()) + 1).float()  # (H*W, S)
        self.register_buffer("pool", onehot / onehot.sum(0))
        self.register_buffer("a", coefficients.float())

    def region_means(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0].flatten(1) @ self.pool  # (B, S)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = self.region_means(x) @ self.a
        return torch.stack([score, torch.zeros_like(score)], dim=1)


class Interacting(SuperpixelAdditive):
    """Not additive: adds products of neighbouring superpixels' means, so Shapley values share them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.region_means(x)
        score = m @ self.a + (m[:, :-1] * m[:, 1:]).sum(1) + torch.tanh(m).prod(1)
        return torch.stack([score, torch.zeros_like(score)], dim=1)


class NoGrad(nn.Module):
    """Wraps a model and fails if it is ever called with autograd enabled."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled(), "a perturbation method ran the model with autograd on"
        return self.net(x)


def positive_share(maps: torch.Tensor, region: torch.Tensor) -> float:
    """Fraction of the positive mass of ``maps`` ``(B, 1, H, W)`` that lies inside ``region`` ``(H, W)``."""
    positive = maps.clamp(min=0)
    return float(positive[..., region].sum() / positive.sum())
