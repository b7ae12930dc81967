"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci 2022, "A Consistent and Efficient
Evaluation Strategy for Attribution Methods", ICML).

Removing pixels with a constant or a blur leaks their *shape*: the mask itself tells the model where the
important pixels were, so a removal curve partly measures the mask, not the explanation. ROAD fills removed
pixels by *noisy linear imputation* instead: each removed pixel is the weighted mean of its 8 neighbours
(direct neighbours weight 1/6, diagonal ones 1/12, the paper's constants), solved jointly for all removed
pixels as one sparse linear system per image and percentage, then Gaussian noise (std 0.01 by default,
absolute, in model space) is added to the imputed pixels so that the fill carries no smooth tell-tale.
It is evaluated without retraining, for the most-relevant-first (MoRF) and least-relevant-first (LeRF)
orders at a list of percentages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from ..core.cost import Cost
from ..core.errors import InputError
from ..core.targets import TargetLike
from ._common import Attribution, finished_cost, scoring
from .faithfulness import Space, check_chunk_size, count_of, percent, prepared, removal_rank, scored_target
from .results import floats

# (row offset, column offset, weight): a pixel is the weighted mean of its 8 neighbours (Rong et al. 2022).
NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, 0, 1 / 6),
    (1, 0, 1 / 6),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (-1, -1, 1 / 12),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (1, 1, 1 / 12),
)
DEFAULT_PERCENTAGES: tuple[float, ...] = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def noisy_linear_imputation(
    image: Tensor, removed: Tensor, *, noise: float = 0.01, generator: torch.Generator | None = None
) -> Tensor:
    """``(C, H, W)``: ``image`` with the ``removed`` ``(H, W)`` bool pixels filled by noisy linear imputation.

    Each removed pixel ``i`` satisfies ``v_i = sum_j w_ij v_j / sum_j w_ij`` over its neighbours ``j``
    inside the image (removed neighbours are unknowns too, kept ones are known), so at the border the
    weights of the missing neighbours drop out. All removed pixels are solved at once as a sparse system
    (one factorisation for the C channels); then ``noise * N(0, 1)`` (drawn from ``generator`` on the CPU)
    is added to them. Kept pixels are returned unchanged. Every removed region must touch a kept pixel,
    which holds whenever at least one pixel is kept.
    """
    from scipy.sparse import coo_matrix  # scipy.sparse.linalg costs ~0.8 s to import: only when used
    from scipy.sparse.linalg import spsolve

    c, h, w = image.shape
    flat_removed = removed.reshape(-1).cpu().numpy()
    unknown = np.flatnonzero(flat_removed)
    if unknown.size == 0:
        return image.clone()
    if unknown.size == h * w:
        raise InputError("every pixel was removed: nothing is left to impute from", "remove less than 100%")
    values = image.detach().reshape(c, -1).cpu().double().numpy()
    variable = np.full(h * w, -1)
    variable[unknown] = np.arange(unknown.size)
    r, q = unknown // w, unknown % w
    diagonal = np.zeros(unknown.size)
    rhs = np.zeros((unknown.size, c))
    rows, cols, entries = [], [], []
    for dr, dc, weight in NEIGHBOURS:
        nr, nc = r + dr, q + dc
        inside = (nr >= 0) & (nr < h) & (nc >= 0) & (nc < w)
        diagonal[inside] += weight
        eq, neighbour = np.flatnonzero(inside), (nr * w + nc)[inside]
        is_unknown = flat_removed[neighbour]
        rows.append(eq[is_unknown])
        cols.append(variable[neighbour[is_unknown]])
        entries.append(np.full(int(is_unknown.sum()), -weight))
        # Each equation has at most one neighbour per offset, so these indices never repeat.
        rhs[eq[~is_unknown]] += weight * values[:, neighbour[~is_unknown]].T
    rows.append(np.arange(unknown.size))
    cols.append(np.arange(unknown.size))
    entries.append(diagonal)
    system = coo_matrix(
        (np.concatenate(entries), (np.concatenate(rows), np.concatenate(cols))), shape=(unknown.size, unknown.size)
    ).tocsc()
    solved = spsolve(system, rhs).reshape(unknown.size, c)
    filled = values.copy()
    filled[:, unknown] = solved.T
    out = torch.from_numpy(filled).view(c, h, w)
    if noise:
        z = torch.randn((c, h, w), generator=generator, dtype=torch.float64)
        out = torch.where(removed.cpu().view(1, h, w), out + noise * z, out)
    return out.to(device=image.device, dtype=image.dtype)


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
        out: dict[str, Any] = {
            "metric": "road",
            "higher_is_better": True,
            "space": self.space,
            "params": dict(self.params),
            "cost": self.cost.as_dict(),
        }
        for name in ("percentages", "morf", "lerf", "clean_scores", "morf_mean", "lerf_mean", "gap"):
            out[name] = floats(getattr(self, name))
        return out


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
    the imputations are sparse solves on the CPU, done lazily chunk by chunk (they dominate the time on
    large images). ``space``, ``target``, ``chunk_size`` as in :func:`~saliscope.metrics.deletion`.
    """
    fix = "pass percentages from 0 up to (not including) 100, e.g. (10, 20, ..., 90)"
    levels = [percent("percentages", p, allow_zero=True, fix=fix) for p in percentages]
    if not levels:
        raise InputError("no percentages given", "pass e.g. percentages=(10, 20, ..., 90)")
    if not (isinstance(noise, (int, float)) and math.isfinite(noise) and noise >= 0):
        raise InputError(f"noise must be a finite number >= 0, got {noise!r}", "use noise=0.01 (the paper's) or 0")
    check_chunk_size(chunk_size)
    x, sal = prepared(x, attribution)
    b, _, h, w = x.shape
    n_levels = len(levels)
    counts = torch.tensor([count_of(p, h * w) for p in levels])
    flat = sal.flatten(1)
    ranks = (removal_rank(flat, descending=True), removal_rank(flat, descending=False))  # MoRF, LeRF
    tobj, used_space = scored_target(model, attribution, target, space)
    per_image = 2 * n_levels

    def make_rows(start: int, stop: int) -> tuple[Tensor, Tensor]:
        rows = torch.arange(start, stop)
        images = []
        for row in rows.tolist():
            image, work = divmod(row, per_image)
            order, level = divmod(work, n_levels)
            removed = (ranks[order][image] < counts[level]).view(h, w)
            generator = torch.Generator().manual_seed(seed * 1_000_003 + work)
            images.append(noisy_linear_imputation(x[image], removed, noise=noise, generator=generator))
        return torch.stack(images), rows // per_image

    with scoring(model, x, tobj, chunk_size=chunk_size, memory_budget=memory_budget) as scorer:
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
