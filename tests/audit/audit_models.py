"""Hand-set models for the audit tests: each reads one known patch of its input, so every map is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from saliscope.models.preprocess import Preprocess

SIZE = 32
PATCH = (0, 0, 6, 6)  # x0, y0, x1, y1 in input pixels: inside the top-left corner (30% = 10 px)
PIXELS = Preprocess(size=SIZE, resize=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # no crop, [0, 1] in


class PatchMask(nn.Module):
    """Multiplies a (B, 1, H, W) map by a fixed 0/1 mask: a spatial layer whose output is zero off the patch."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.mask


class PatchReader(nn.Module):
    """Class 0's logit is the sum, over ``patch``, of the channel mean of the input; class 1's is 0.

    On positive inputs class 0 always wins. Its gradient is 1/3 on every channel of every patch pixel
    and 0 elsewhere; Grad-CAM on ``mask`` (its automatic layer) is the channel mean on the patch.
    """

    def __init__(self, patch: tuple[int, int, int, int] = PATCH, size: int = SIZE) -> None:
        super().__init__()
        x0, y0, x1, y1 = patch
        mask = torch.zeros(1, 1, size, size)
        mask[..., y0:y1, x0:x1] = 1.0
        self.mean = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            self.mean.weight.fill_(1.0 / 3.0)
            self.mean.bias.zero_()
        self.mask = PatchMask(mask)
        self.preprocess = PIXELS
        self.labels = ("corner", "other")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.mask(self.mean(x)).sum((2, 3))
        return torch.cat([s, torch.zeros_like(s)], dim=1)


class Fragile(PatchReader):
    """A PatchReader whose scores are NaN on an image with a black patch (0 · 1/0): it cannot be explained."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.mask(self.mean(x)).sum((2, 3))
        return torch.cat([s + 0.0 * (1.0 / s), torch.zeros_like(s)], dim=1)


class Blind(nn.Module):
    """Ignores its input: every map is flat."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 2)
        self.preprocess = PIXELS
        self.labels = ("corner", "other")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.ones(x.shape[0], 1, device=x.device)) + 0.0 * x.sum((1, 2, 3))[:, None]


def write_folder(root: Path, counts: dict[str, int], *, size: int = SIZE, seed: int = 0) -> Path:
    """An ImageFolder of random bright RGB PNGs (values 30..254, so the patch sum is positive)."""
    rng = np.random.default_rng(seed)
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(30, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{i:03d}.png")
    return root
