"""RISE (Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
BMVC 2018)."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.cost import CostMeter
from ...core.errors import InputError
from ...core.targets import BoundTarget
from ..base import Attribution, Precision
from .base import PerturbationExplainer, Seeded, check_count
from .fill import Replacement


class RISE(Seeded, PerturbationExplainer):
    """Score the image under many random smooth masks; a pixel's importance is the score-weighted mask mean.

    Each of the ``n_masks`` masks is a ``grid × grid`` binary grid whose cells are kept with probability
    ``p``, upsampled bilinearly to ``(grid + 1)`` cells of ``ceil(H / grid) × ceil(W / grid)`` pixels and
    cropped at a random shift, so that its edges fall anywhere. The paper's map is

        ``M(pixel) = sum_i score_i * mask_i(pixel) / (n_masks * p)``.

    With ``centre=True`` (the default) ``score_i - mean(score)`` replaces ``score_i``. That removes the
    term ``mean(score) * sum_i mask_i / (n_masks * p)``: a constant (the mean score) plus noise from
    uneven mask coverage, which says nothing about where the evidence is but, with logit scores, would
    swamp a map shown around zero. The centred map is signed: positive where keeping a pixel visible
    raises the score above average. ``centre=False`` gives the paper's map exactly.

    All images of a batch see the same masks (drawn from ``seed`` on the CPU), so a batch is explained as
    each image alone. Cost: ``n_masks`` forward passes per image. Returns ``(B, 1, H, W)`` maps.

    Args:
        model: the classifier.
        n_masks: random masks per image (the paper uses 4000 for ResNet-50 on ImageNet).
        grid: cells per side of the low-resolution masks (the paper: 7 on 224 × 224).
        p: probability that a cell is kept (visible).
        centre: subtract the mean score first (see above).
        seed: seeds the masks; None draws a seed, recorded in the explanation's params.
        replacement: what hidden pixels become (see :class:`PerturbationExplainer`; the paper
            multiplies by the mask, i.e. ``replacement="constant", value=<black>``).
        value: the constant for ``replacement="constant"``.
        blur_sigma: the blur's standard deviation in pixels for ``replacement="blur"``.
        progress: ``True`` shows a tqdm bar, ``False`` never; ``None`` only for long runs on a terminal.
    """

    name: ClassVar[str] = "rise"

    def __init__(
        self,
        model: nn.Module,
        *,
        n_masks: int = 2000,
        grid: int = 7,
        p: float = 0.5,
        centre: bool = True,
        seed: int | None = None,
        replacement: Replacement = "constant",
        value: float = 0.0,
        blur_sigma: float = 10.0,
        progress: bool | None = None,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        precision: Precision = "auto",
    ) -> None:
        super().__init__(
            model,
            replacement=replacement,
            value=value,
            blur_sigma=blur_sigma,
            progress=progress,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            precision=precision,
        )
        self.n_masks = check_count("n_masks", n_masks, example=2000)
        self.grid = check_count("grid", grid, example=7)
        if not 0 < p < 1:
            raise InputError(f"p must be strictly between 0 and 1, got {p}", "use e.g. p=0.5")
        self.p = float(p)
        self.centre = bool(centre)
        self.seed = seed

    @property
    def rows_per_sample(self) -> int:
        return self.n_masks

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "n_masks": self.n_masks,
            "grid": self.grid,
            "p": self.p,
            "centre": self.centre,
            "seed": self.seed,
        }

    def _perturb(self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter) -> list[Attribution]:
        seed = self.run_seed()
        masks = RandomMasks(self.n_masks, self.grid, self.p, (int(x.shape[-2]), int(x.shape[-1])), seed)
        k, b = len(targets), int(x.shape[0])
        # Accumulated in float64: centring subtracts two large, close sums.
        weighted = torch.zeros((k, b, *x.shape[-2:]), dtype=torch.float64, device=x.device)
        coverage = torch.zeros((b, *x.shape[-2:]), dtype=torch.float64, device=x.device)
        score_sum = torch.zeros((k, b), dtype=torch.float64, device=x.device)
        keep = lambda sample, index: masks(index)  # noqa: E731 - every image sees the same masks
        for chunk in self.scored(net, x, targets, meter, n=self.n_masks, keep=keep):
            m = chunk.keep[:, 0].double()  # (R, H, W)
            s = chunk.scores.double()  # (K, R)
            for j in range(k):
                weighted[j].index_add_(0, chunk.sample, s[j].view(-1, 1, 1) * m)
                score_sum[j].index_add_(0, chunk.sample, s[j])
            coverage.index_add_(0, chunk.sample, m)
        mean_score = score_sum / self.n_masks
        if self.centre:
            weighted = weighted - mean_score.view(k, b, 1, 1) * coverage
        maps = (weighted / (self.n_masks * self.p)).unsqueeze(2).to(x.dtype)
        return [
            Attribution(maps[j], extras={"mean_score": mean_score[j].to(x.dtype)}, params={"seed": seed})
            for j in range(k)
        ]


class RandomMasks:
    """The ``n`` RISE masks of one seed for ``size = (H, W)`` images, made on demand: ``masks(index)``.

    The low-resolution grids and shifts are drawn up front on the CPU (``n * (grid² + 2)`` numbers); each
    chunk upsamples only the masks it needs, in float32, so every precision and batch sees the same masks.
    """

    def __init__(self, n: int, grid: int, p: float, size: tuple[int, int], seed: int) -> None:
        height, width = size
        if grid > min(height, width):
            raise InputError(
                f"a {grid}×{grid} mask grid is finer than the {height}×{width} image",
                f"use grid <= {min(height, width)} (the paper: 7 on 224×224)",
            )
        self.size = size
        self.cell = (math.ceil(height / grid), math.ceil(width / grid))
        generator = Seeded.generator(seed)
        self.grids = (torch.rand((n, 1, grid, grid), generator=generator) < p).float()
        self.shifts = torch.stack(
            [torch.randint(0, c, (n,), generator=generator) for c in self.cell], dim=1
        )  # (n, 2): (dy, dx)

    def __call__(self, index: Tensor) -> Tensor:
        """``(R, 1, H, W)`` float32 masks for the mask indices ``index`` ``(R,)``, on ``index``'s device."""
        device = index.device
        cpu = index.cpu()
        grids = self.grids[cpu].to(device)
        grid = int(grids.shape[-1])
        big = (self.cell[0] * (grid + 1), self.cell[1] * (grid + 1))
        up = F.interpolate(grids, size=big, mode="bilinear", align_corners=False)[:, 0]  # (R, bigH, bigW)
        dy, dx = (self.shifts[cpu].to(device)).unbind(1)
        ys = dy.view(-1, 1, 1) + torch.arange(self.size[0], device=device).view(1, -1, 1)
        xs = dx.view(-1, 1, 1) + torch.arange(self.size[1], device=device).view(1, 1, -1)
        rows = torch.arange(len(cpu), device=device).view(-1, 1, 1)
        return up[rows, ys, xs].clamp_(0, 1).unsqueeze(1)  # bilinear rounding can overshoot 1 by an ulp
