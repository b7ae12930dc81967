"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci 2022, "A Consistent and Efficient
Evaluation Strategy for Attribution Methods", ICML).

Removing pixels with a constant or a blur leaks their *shape*: the mask itself tells the model where the
important pixels were, so a removal curve partly measures the mask, not the explanation. ROAD fills removed
pixels by *noisy linear imputation* instead (:mod:`saliscope.metrics.imputation`): each removed pixel is the
weighted mean of its 8 neighbours (direct neighbours weight 1/6, diagonal ones 1/12, the paper's constants),
solved jointly for all removed pixels, then Gaussian noise (std 0.01 by default, absolute, in model space) is
added to the imputed pixels so that the fill carries no smooth tell-tale. It is evaluated without retraining,
for the most-relevant-first (MoRF) and least-relevant-first (LeRF) orders at a list of percentages; the
imputations of every step in a chunk of passes are one batched sparse solve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..core.cost import Cost
from ..core.errors import InputError
from ..core.targets import TargetLike
from ._common import Attribution, finished_cost
from .faithfulness import Removal, Space, count_of, percent, prepared, removal_rank
from .imputation import NEIGHBOURS, impute, noisy_linear_imputation
from .results import record

__all__ = ["DEFAULT_PERCENTAGES", "NEIGHBOURS", "Road", "noisy_linear_imputation", "road"]

DEFAULT_PERCENTAGES: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)


@dataclass(frozen=True)
class Road:
    """ROAD scores (Rong et al. 2022) at each percentage of removed pixels.

    Attributes:
        percentages: ``(K,)`` percent of the pixels removed.
        morf: ``(B, K)`` the target's score with the top-k% removed (lower is better).
        lerf: ``(B, K)`` the score with the bottom-k% removed (higher is better).
        clean_scores: ``(B,)``.
        morf_mean, lerf_mean: ``(B,)`` the curves averaged over the percentages.
        gap: ``(B,)`` ``lerf_mean - morf_mean``; higher is better (the two orders agree most).
    """

    percentages: Tensor
    morf: Tensor
    lerf: Tensor
    clean_scores: Tensor
    morf_mean: Tensor
    lerf_mean: Tensor
    gap: Tensor
    space: str
    params: Mapping[str, Any]
    cost: Cost
    higher_is_better: ClassVar[bool] = True

    @property
    def value(self) -> Tensor:
        return self.gap

    def as_dict(self) -> dict[str, Any]:
        return record(self, "road", ("percentages", "morf", "lerf", "clean_scores", "morf_mean", "lerf_mean", "gap"))


def road(
    model: nn.Module,
    x: Tensor,
    attribution: Attribution,
    target: TargetLike = None,
    *,
    percentages: Sequence[float] = DEFAULT_PERCENTAGES,
    noise: float = 0.01,
    space: Space = "probability",
    seed: int = 0,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> Road:
    """ROAD without retraining (Rong et al. 2022): remove the top (MoRF) and bottom (LeRF) ``k``% pixels of
    the map for each ``k`` in ``percentages``, impute them (:func:`noisy_linear_imputation`), and score.

    Pixels rank in descending order of the map for MoRF and ascending for LeRF, ties in raster order.
    The noise of (order, percentage) is one ``(C, H, W)`` pattern drawn from ``seed``, the same for every
    image, so a batch gives what each image gives alone. ``B * 2 * K`` model passes in batched chunks;
    the imputations of a chunk's steps are one sparse solve on the CPU, built lazily chunk by chunk.
    A percentage that would remove every pixel of the image (just below 100 on a small image) is refused
    before anything runs. ``space``, ``target``, ``chunk_size`` as in :func:`~saliscope.metrics.deletion`.
    """
    fix = "pass percentages from 0 up to (not including) 100, e.g. (10, 20, ..., 90)"
    levels = [percent("percentages", p, allow_zero=True, fix=fix) for p in percentages]
    if not levels:
        raise InputError("no percentages given", "pass e.g. percentages=(10, 20, ..., 90)")
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise InputError(f"noise must be a finite number >= 0, got {noise!r}", "use noise=0.01 (the paper's) or 0")
    how = Removal(space=space, seed=seed, chunk_size=chunk_size, memory_budget=memory_budget)
    x, sal = prepared(x, attribution)
    b, _, h, w = x.shape
    counts = torch.tensor([count_of(p, h * w) for p in levels])
    if bool((counts >= h * w).any()):
        # Rounded half up, a percentage just below 100 removes every pixel of a small image.
        worst = levels[int(counts.argmax())]
        most = 100 * (h * w - 1) / (h * w)
        raise InputError(
            f"removing {worst:g}% of a {h}×{w} image removes all of its {h * w} pixels (counts round half up): "
            "nothing is left to impute from",
            f"pass percentages of at most {math.floor(most * 100) / 100:g} for this image size",
        )
    n_levels = len(levels)
    flat = sal.flatten(1)
    ranks = (removal_rank(flat, descending=True), removal_rank(flat, descending=False))  # MoRF, LeRF
    tobj, used_space = how.target(model, attribution, target)
    per_image = 2 * n_levels

    def make_rows(start: int, stop: int) -> tuple[Tensor, Tensor]:
        image, work = (torch.arange(start, stop) // per_image), (torch.arange(start, stop) % per_image)
        order, level = work // n_levels, work % n_levels
        removed = torch.stack([ranks[o][i] for o, i in zip(order.tolist(), image.tolist(), strict=True)])
        removed = (removed < counts[level, None].to(removed.device)).view(-1, h, w)
        generators = [torch.Generator().manual_seed(seed * 1_000_003 + j) for j in work.tolist()]
        return impute(x[image.to(x.device)], removed, noise=noise, generators=generators), image

    with how.scoring(model, x, tobj) as scorer:
        scores = scorer.scores(make_rows, b * per_image).cpu().view(b, 2, n_levels)
        clean = scorer.clean_scores.cpu()
    morf, lerf = scores[:, 0], scores[:, 1]
    return Road(
        percentages=torch.tensor(levels),
        morf=morf,
        lerf=lerf,
        clean_scores=clean,
        morf_mean=morf.mean(dim=1),
        lerf_mean=lerf.mean(dim=1),
        gap=lerf.mean(dim=1) - morf.mean(dim=1),
        space=used_space,
        params={
            "percentages": levels,
            "noise": noise,
            "seed": seed,
            "space": used_space,
            "neighbour_weights": "direct 1/6, diagonal 1/12",
        },
        cost=finished_cost(scorer),
    )
