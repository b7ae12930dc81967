"""Faithfulness: does hiding what the map calls important change the model's score?

One engine serves every curve metric: the map ranks *units* (pixels, or patches for pixel flipping) in
removal order; step ``s`` of ``S`` hides the first ``round(s * U / S)`` units. Each altered input is built
lazily inside ``make_rows`` (rank → a per-row threshold → a mask), so ``S`` steps × ``B`` images never
exist at once, and all rows of all images go through one :meth:`Scorer.scores` call: batched forward
passes in memory-bounded chunks, never one call per step.

- :func:`deletion`, :func:`insertion`: Petsiuk, Das & Saenko 2018, "RISE: Randomized Input Sampling for
  Explanation of Black-box Models" (BMVC).
- :func:`pixel_flipping` (MoRF / LeRF over patches): Bach et al. 2015, "On Pixel-Wise Explanations for
  Non-Linear Classifier Decisions by Layer-Wise Relevance Propagation" (PLOS ONE); Samek et al. 2017,
  "Evaluating the Visualization of What a Deep Neural Network Has Learned" (IEEE TNNLS).
- :func:`faithfulness_correlation`: Bhatt, Weller & Moura 2020, "Evaluating and Aggregating Feature-based
  Model Explanations" (IJCAI).
- :func:`counterfactual_removal`: hide the top-k% region, compared with same-shaped random regions.

Ranking: pixels (or patches) in descending order of the map; ties go to the lower raster index first
(row by row, left to right) through a stable sort, so a flat map gives raster order (and a warning)
instead of an error or a random order.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, is_dataclass, replace
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..core.chunking import image_rows
from ..core.cost import Cost
from ..core.errors import InputError, NonFiniteError
from ..core.targets import (
    BoundClasses,
    BoundTarget,
    ClassTarget,
    PredictedClass,
    Target,
    TargetLike,
    as_target,
)
from ..core.validation import check_batch, whole
from ..core.views import FlatMapWarning
from ..methods.perturbation.fill import replacement_image
from ._common import (
    Attribution,
    check_map_fits,
    explained_target,
    finished_cost,
    saliency_map,
    scoring,
    top1,
)
from .results import Curve, floats, record, relative_to

Replacement = Literal["blur", "mean", "constant", "noise"]
REPLACEMENTS: tuple[str, ...] = get_args(Replacement)
Space = Literal["probability", "logit"]
Order = Literal["morf", "lerf"]


# -- checks and shared pieces ------------------------------------------------------------------------


def prepared(x: Tensor, attribution: Attribution) -> tuple[Tensor, Tensor]:
    """The checked batch and its ``(B, 1, H, W)`` map on ``x``'s device (NaN raises, a flat map warns)."""
    x = check_batch(x)
    sal = saliency_map(attribution).to(x.device)
    check_map_fits(x, sal)
    if not bool(torch.isfinite(sal).all()):
        raise NonFiniteError("the map contains NaN or Inf", "check the explanation (try the method in float64)")
    flat = sal.flatten(1)
    constant = (flat.amax(1) == flat.amin(1)).nonzero().flatten().tolist()
    if constant:
        warnings.warn(
            FlatMapWarning(
                f"the map of image(s) {constant} is flat: pixels are ranked in raster order (row by row), "
                "so the metric measures that order, not the explanation — check that the method saw a signal"
            ),
            stacklevel=3,
        )
    return x, sal


def check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is not None:
        whole("chunk_size", chunk_size, "omit chunk_size to choose it from the memory budget")


def percent(name: str, value: float, *, allow_zero: bool = False, fix: str | None = None) -> float:
    """A percentage of the image in (0, 100) (or [0, 100) with ``allow_zero``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (0 <= value < 100 if allow_zero else 0 < value < 100):
        low = "0 <=" if allow_zero else "0 <"
        raise InputError(
            f"{name} must be a percentage with {low} {name} < 100, got {value!r}",
            fix or f"pass e.g. {name}=10 for the top 10% of the pixels",
        )
    return float(value)


def count_of(percentage: float, n: int) -> int:
    """How many of ``n`` units ``percentage`` percent is, rounded half up, at least 1 for a positive share."""
    count = math.floor(percentage / 100 * n + 0.5)
    return max(count, 1) if percentage > 0 else 0


def scored_target(
    model: nn.Module, attribution: Attribution, target: TargetLike, space: str
) -> tuple[Target | BoundTarget, str]:
    """The target to score, re-expressed in ``space``, and the space it is actually scored in.

    Class targets (a class index, a label, the predicted class, or the bound classes an Explanation
    carries, which are usually in logit space) keep their class and take ``space``; Petsiuk et al.
    scored softmax probabilities, hence the default. Targets that are not class scores (boxes,
    segments, embeddings) are scored as they define, reported as space ``"target"``; a target that picks
    an entry of a dict / tuple output (``OutputTarget``) passes ``space`` on to its inner class target.
    """
    if space not in get_args(Space):
        raise InputError(f"unknown score space {space!r}", "use space='probability' (softmax) or 'logit'")
    scored: Space = space  # type: ignore[assignment]  # checked just above
    chosen = as_target(explained_target(attribution, target), labels=getattr(model, "labels", None), space=scored)
    return _in_space(chosen, scored)


def _in_space(target: Target | BoundTarget, space: Space) -> tuple[Target | BoundTarget, str]:
    if isinstance(target, (ClassTarget, PredictedClass, BoundClasses)):
        return replace(target, space=space), space
    inner = getattr(target, "inner", None)
    if is_dataclass(target) and isinstance(inner, (Target, BoundTarget)):
        # A target that picks one entry of a dict / tuple output (OutputTarget) scores its inner target.
        wrapped, used = _in_space(inner, space)
        return replace(target, inner=wrapped), used
    return target, "target"


def fill_image(x: Tensor, model: nn.Module, replacement: str, *, value: float, blur_sigma: float, seed: int) -> Tensor:
    """``(B, C, H, W)``: what each pixel becomes where it is hidden.

    ``"blur"`` (Gaussian of ``blur_sigma`` pixels), ``"mean"`` (each image's channel means),
    ``"constant"`` (``value`` in model space), or ``"noise"``: Gaussian noise with each image's channel
    mean and standard deviation, one pattern drawn from ``seed`` on the CPU and shared by all images (so
    a batch is scored exactly as each image alone, on any device).
    """
    if replacement not in REPLACEMENTS:
        raise InputError(f"unknown replacement {replacement!r}", f"use one of {', '.join(REPLACEMENTS)}")
    if replacement == "noise":
        z = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = x.std(dim=(2, 3), keepdim=True, correction=0)
        return mean + std * z.to(device=x.device, dtype=x.dtype)
    return replacement_image(x, model, replacement, value=value, blur_sigma=blur_sigma)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Removal:
    """What every removal metric shares: what hidden pixels become, the space scores are read in, the seed,
    and how the passes are chunked. Each metric makes one from its arguments; its :meth:`params` are what the
    result records."""

    replacement: str = "blur"
    value: float = 0.0
    blur_sigma: float = 10.0
    space: str = "probability"
    seed: int = 0
    chunk_size: int | None = None
    memory_budget: int | None = None

    def __post_init__(self) -> None:
        check_chunk_size(self.chunk_size)
        if self.replacement not in REPLACEMENTS:
            raise InputError(f"unknown replacement {self.replacement!r}", f"use one of {', '.join(REPLACEMENTS)}")

    def fill(self, x: Tensor, model: nn.Module) -> Tensor:
        """``(B, C, H, W)``: what each pixel becomes where it is hidden (:func:`fill_image`)."""
        return fill_image(x, model, self.replacement, value=self.value, blur_sigma=self.blur_sigma, seed=self.seed)

    def target(
        self, model: nn.Module, attribution: Attribution, target: TargetLike
    ) -> tuple[Target | BoundTarget, str]:
        """The target to score and the space it is scored in (:func:`scored_target`)."""
        return scored_target(model, attribution, target, self.space)

    def scoring(self, model: nn.Module, x: Tensor, target: Target | BoundTarget) -> Any:
        """The :func:`~saliscope.metrics._common.scoring` block, chunked as asked."""
        return scoring(model, x, target, chunk_size=self.chunk_size, memory_budget=self.memory_budget)

    def params(self, space: str, **own: Any) -> dict[str, Any]:
        """The metric's own parameters, then the fill's, the seed and the space actually used."""
        fill = {"replacement": self.replacement, "value": self.value, "blur_sigma": self.blur_sigma}
        return {**own, **fill, "seed": self.seed, "space": space}


def removal_rank(values: Tensor, *, descending: bool = True) -> Tensor:
    """``(B, U)`` → ``(B, U)`` long: the position at which each unit is removed (0 = first).

    A stable sort keeps equal values in index order, so ties are broken towards the lower index.
    """
    order = torch.argsort(-values if descending else values, dim=1, stable=True)
    positions = torch.arange(values.shape[1], device=values.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def patch_units(sal: Tensor, patch_size: int) -> tuple[Tensor, Tensor]:
    """Saliency summed per ``patch_size``² patch ``(B, U)`` and the patch of each pixel ``(H * W,)``.

    Patches at the right and bottom edges are cut short where the image is not a multiple of the size.
    """
    b, _, h, w = sal.shape
    ph, pw = -(-h // patch_size), -(-w // patch_size)
    padded = F.pad(sal, (0, pw * patch_size - w, 0, ph * patch_size - h))
    sums = padded.view(b, ph, patch_size, pw, patch_size).sum(dim=(2, 4)).flatten(1)
    rows = torch.arange(h, device=sal.device) // patch_size
    cols = torch.arange(w, device=sal.device) // patch_size
    return sums, (rows[:, None] * pw + cols[None, :]).flatten()


def step_counts(n_units: int, steps: int) -> Tensor:
    """``(S+1,)`` units hidden after each step, ``S = min(steps, n_units)``: 0, …, ``n_units``.

    Capped so that every step hides at least one more unit; rounded half up so counts only grow.
    """
    s = min(steps, n_units)
    return torch.floor(torch.arange(s + 1, dtype=torch.float64) * n_units / s + 0.5).long()


# -- the curve engine ----------------------------------------------------------------------------------


def _curve(
    model: nn.Module,
    x: Tensor,
    attribution: Attribution,
    target: TargetLike,
    how: Removal,
    *,
    metric: str,
    steps: int,
    insert: bool = False,
    descending: bool = True,
    patch_size: int | None = None,
) -> Curve:
    """Score ``x`` as its units (pixels, or ``patch_size``² patches) are hidden — or, with ``insert``, put back
    onto the fill — in rank order."""
    whole("steps", steps, "use e.g. steps=100")
    x, sal = prepared(x, attribution)
    b, _, h, w = x.shape
    params: dict[str, Any] = {}
    if patch_size is not None:
        if patch_size > min(h, w):
            raise InputError(
                f"patch_size {patch_size} is larger than the image {(h, w)}",
                "use a patch smaller than the image, e.g. patch_size=8",
            )
        unit_values, unit_of_pixel = patch_units(sal, patch_size)
        params["patch_size"] = patch_size
    else:
        unit_values, unit_of_pixel = sal.flatten(1), None
    rank = removal_rank(unit_values, descending=descending)
    if unit_of_pixel is not None:
        rank = rank[:, unit_of_pixel]  # (B, H * W): the removal position of each pixel's patch
    counts = step_counts(int(unit_values.shape[1]), steps)
    n_steps = len(counts) - 1
    fill = how.fill(x, model)
    tobj, used_space = how.target(model, attribution, target)
    # The clean input's score is already known from binding the target: deletion starts there and
    # insertion ends there, so those rows are not run again.
    run_steps = torch.arange(0, n_steps) if insert else torch.arange(1, n_steps + 1)
    per_image = len(run_steps)
    thresholds = counts[run_steps].to(x.device)

    def make_rows(start: int, stop: int) -> tuple[Tensor, Tensor]:
        rows = torch.arange(start, stop)
        sample = rows // per_image
        hidden = image_rows(rank, sample) < thresholds[(rows % per_image).to(x.device)][:, None]
        hidden = hidden.view(-1, 1, h, w)
        image, filled = image_rows(x, sample), image_rows(fill, sample)
        return torch.where(hidden, image, filled) if insert else torch.where(hidden, filled, image), sample

    with how.scoring(model, x, tobj) as scorer:
        scores = scorer.scores(make_rows, b * per_image).cpu().view(b, per_image)
        clean = scorer.clean_scores.cpu()
    parts = [scores, clean[:, None]] if insert else [clean[:, None], scores]
    curve = torch.cat(parts, dim=1)
    fractions = counts.double() / counts[-1]
    auc = torch.trapezoid(curve.double(), fractions, dim=1).float()
    return Curve(
        metric=metric,
        fractions=fractions.float(),
        scores=curve,
        clean_scores=clean,
        auc=auc,
        aopc=(clean[:, None] - curve).mean(dim=1),
        higher_is_better=metric in ("insertion", "lerf"),
        space=used_space,
        params=how.params(used_space, **params, steps=n_steps),
        cost=finished_cost(scorer),
    )


def deletion(
    model: nn.Module,
    x: Tensor,
    attribution: Attribution,
    target: TargetLike = None,
    *,
    steps: int = 100,
    replacement: Replacement = "blur",
    value: float = 0.0,
    blur_sigma: float = 10.0,
    space: Space = "probability",
    seed: int = 0,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> Curve:
    """Deletion curve (Petsiuk et al. 2018, RISE): hide pixels most-salient-first; lower AUC is better.

    Args:
        model: the classifier; left exactly as found.
        x: ``(B, C, H, W)`` the batch the map explains.
        attribution: an :class:`~saliscope.Explanation` or a ``(B, 1|C, H, W)`` map (channels summed);
            pixels are hidden in descending order of the map (ties: raster order).
        target: the score to follow; ``None`` means the explanation's own target, else the predicted
            class.
        steps: ``S`` steps from 0 to all pixels hidden (capped at the number of pixels); ``S * B`` model
            passes in batched chunks (step 0 is the clean score, already known).
        replacement: what hidden pixels become: ``"blur"`` (Gaussian, ``blur_sigma`` px), ``"mean"``,
            ``"constant"`` (``value``), ``"noise"`` (seeded). Petsiuk et al. delete to zero (black) and
            insert into a blur; a blur for both is the default here, because a sharp black hole is itself a
            strong, out-of-distribution feature (Hooker et al. 2019) — pass ``replacement="constant"``
            (with ``value`` the normalised black) for the paper's deletion.
        space: ``"probability"`` (softmax, as Petsiuk et al.) or ``"logit"``.

    Returns:
        A :class:`Curve` with ``fractions (S+1,)``, ``scores (B, S+1)``, ``auc (B,)`` and its cost.
    """
    how = Removal(replacement, value, blur_sigma, space, seed, chunk_size, memory_budget)
    return _curve(model, x, attribution, target, how, metric="deletion", steps=steps)


def insertion(
    model: nn.Module,
    x: Tensor,
    attribution: Attribution,
    target: TargetLike = None,
    *,
    steps: int = 100,
    replacement: Replacement = "blur",
    value: float = 0.0,
    blur_sigma: float = 10.0,
    space: Space = "probability",
    seed: int = 0,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> Curve:
    """Insertion curve (Petsiuk et al. 2018, RISE): start from the fully replaced image (a blur by
    default, as the paper) and put pixels back most-salient-first; higher AUC is better.

    Same arguments and result as :func:`deletion`; ``scores[:, -1]`` is the clean score.
    """
    how = Removal(replacement, value, blur_sigma, space, seed, chunk_size, memory_budget)
    return _curve(model, x, attribution, target, how, metric="insertion", steps=steps, insert=True)


def pixel_flipping(
    model: nn.Module,
    x: Tensor,
    attribution: Attribution,
    target: TargetLike = None,
    *,
    order: Order = "morf",
    patch_size: int = 8,
    steps: int = 100,
    replacement: Replacement = "blur",
    value: float = 0.0,
    blur_sigma: float = 10.0,
    space: Space = "probability",
    seed: int = 0,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> Curve:
    """Pixel flipping over patches (Bach et al. 2015; Samek et al. 2017, MoRF / LeRF).

    The map is summed over ``patch_size``² patches; patches are hidden most-relevant-first
    (``order="morf"``: the score should fall fast, lower AUC / higher ``aopc`` is better) or
    least-relevant-first (``"lerf"``: the score should hold, higher AUC is better). ``steps`` is capped at
    the number of patches; each step hides ``patches / steps`` more patches. Other arguments and the
    result as in :func:`deletion`; ``fractions`` count patches.
    """
    if order not in get_args(Order):
        raise InputError(f"unknown order {order!r}", "use order='morf' (most relevant first) or 'lerf'")
    whole("patch_size", patch_size, "use e.g. patch_size=8 (pixels)")
    how = Removal(replacement, value, blur_sigma, space, seed, chunk_size, memory_budget)
    return _curve(
        model, x, attribution, target, how, metric=order, steps=steps, descending=order == "morf", patch_size=patch_size
    )


# -- faithfulness correlation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FaithfulnessCorrelation:
    """Pearson correlation, per image, between a random subset's attribution sum and the score drop
    its removal causes (Bhatt et al. 2020); higher is better, 1 is perfect.

    Attributes:
        correlation: ``(B,)`` (NaN where either side does not vary, e.g. a flat map).
        attribution_sums: ``(B, n)`` the map summed over each subset.
        score_drops: ``(B, n)`` clean score minus the score with the subset replaced.
    """

    correlation: Tensor
    attribution_sums: Tensor
    score_drops: Tensor
    clean_scores: Tensor
    space: str
    params: Mapping[str, Any]
    cost: Cost
    higher_is_better: ClassVar[bool] = True

    @property
    def value(self) -> Tensor:
        return self.correlation

    def as_dict(self) -> dict[str, Any]:
        names = ("correlation", "attribution_sums", "score_drops", "clean_scores")
        return record(self, "faithfulness-correlation", names)


def pearson(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise Pearson correlation of ``(B, n)`` tensors, in float64; NaN where a row is constant."""
    a = a.double() - a.double().mean(dim=1, keepdim=True)
    b = b.double() - b.double().mean(dim=1, keepdim=True)
    denom = (a.square().sum(1) * b.square().sum(1)).sqrt()
    return torch.where(denom > 0, (a * b).sum(1) / denom.clamp_min(1e-300), torch.full_like(denom, math.nan)).float()


def faithfulness_correlation(
    model: nn.Module,
    x: Tensor,
    attribution: Attribution,
    target: TargetLike = None,
    *,
    n_subsets: int = 100,
    subset_fraction: float = 0.01,
    replacement: Replacement = "mean",
    value: float = 0.0,
    blur_sigma: float = 10.0,
    space: Space = "probability",
    seed: int = 0,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> FaithfulnessCorrelation:
    """Faithfulness correlation (Bhatt, Weller & Moura 2020).

    ``n_subsets`` random pixel subsets, each ``subset_fraction`` of the image (at least one pixel), are
    drawn from ``seed`` — the same subsets for every image, so batched = alone — and each is replaced in
    turn. The default replacement is ``"mean"``: a blur barely changes scattered single pixels, whose
    neighbours survive. ``B * n_subsets`` model passes, batched. Other arguments as :func:`deletion`.
    """
    whole("n_subsets", n_subsets, "use e.g. n_subsets=100")
    if n_subsets < 2:
        raise InputError("a correlation needs at least 2 subsets", "use e.g. n_subsets=100")
    if not (isinstance(subset_fraction, (int, float)) and 0 < subset_fraction < 1):
        raise InputError(
            f"subset_fraction must be between 0 and 1, got {subset_fraction!r}",
            "use e.g. subset_fraction=0.01 (1% of the pixels per subset)",
        )
    how = Removal(replacement, value, blur_sigma, space, seed, chunk_size, memory_budget)
    x, sal = prepared(x, attribution)
    b, _, h, w = x.shape
    size = max(1, round(subset_fraction * h * w))
    generator = torch.Generator().manual_seed(seed)
    subsets = torch.stack([torch.randperm(h * w, generator=generator)[:size] for _ in range(n_subsets)])
    sums = sal.flatten(1).cpu()[:, subsets].sum(dim=2)  # (B, n)
    fill = how.fill(x, model)
    tobj, used_space = how.target(model, attribution, target)
    on_device = subsets.to(x.device)

    def make_rows(start: int, stop: int) -> tuple[Tensor, Tensor]:
        rows = torch.arange(start, stop)
        sample = rows // n_subsets
        picked = on_device[(rows % n_subsets).to(x.device)]
        hidden = torch.zeros(len(rows), h * w, dtype=torch.bool, device=x.device)
        hidden.scatter_(1, picked, True)
        img = sample.to(x.device)
        return torch.where(hidden.view(-1, 1, h, w), fill[img], x[img]), sample

    with how.scoring(model, x, tobj) as scorer:
        scores = scorer.scores(make_rows, b * n_subsets).cpu().view(b, n_subsets)
        clean = scorer.clean_scores.cpu()
    drops = clean[:, None] - scores
    return FaithfulnessCorrelation(
        correlation=pearson(sums, drops),
        attribution_sums=sums,
        score_drops=drops,
        clean_scores=clean,
        space=used_space,
        params=how.params(used_space, n_subsets=n_subsets, subset_size=size),
        cost=finished_cost(scorer),
    )


# -- counterfactual removal -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CounterfactualRemoval:
    """What hiding the map's top-k% region does, against hiding same-shaped random regions.

    Attributes:
        clean_scores, hidden_scores: ``(B,)`` the target's score before / with the salient region hidden.
        drop: ``(B,)`` ``clean - hidden``; ``relative_drop``: the share of the clean score lost.
        flipped: ``(B,)`` bool, whether the top-1 class changed (``None`` for outputs that are not
            ``(B, K)`` class scores).
        random_drops: ``(B, n_random)`` the drops for the shifted regions; ``random_drop_mean`` ``(B,)``.
        random_flip_rate: ``(B,)`` the share of the shifted regions whose hiding changed the top-1 class
            (``None`` like ``flipped``): a salient region that flips the prediction means more when random
            ones of its size do not.
        margin: ``(B,)`` ``drop - random_drop_mean``; higher is better (> 0: the map beats chance).
        beats_random: ``(B,)`` share of the random regions whose drop is below the salient one.
        region_fraction: the share of the pixels each region hides.
    """

    clean_scores: Tensor
    hidden_scores: Tensor
    drop: Tensor
    relative_drop: Tensor
    flipped: Tensor | None
    random_drops: Tensor
    random_drop_mean: Tensor
    random_flip_rate: Tensor | None
    margin: Tensor
    beats_random: Tensor
    region_fraction: float
    space: str
    params: Mapping[str, Any]
    cost: Cost
    higher_is_better: ClassVar[bool] = True

    @property
    def value(self) -> Tensor:
        return self.margin

    def as_dict(self) -> dict[str, Any]:
        names = ("clean_scores", "hidden_scores", "drop", "relative_drop", "random_drops", "random_drop_mean")
        out = record(self, "counterfactual-removal", (*names, "margin", "beats_random"))
        out["region_fraction"] = self.region_fraction
        out["flipped"] = None if self.flipped is None else [bool(v) for v in self.flipped]
        out["random_flip_rate"] = None if self.random_flip_rate is None else floats(self.random_flip_rate)
        return out


def shifted(regions: Tensor, sample: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """``(R, H, W)``: ``regions[sample[r]]`` (``(B, H, W)``) rolled circularly by ``(dy[r], dx[r])``."""
    _, h, w = regions.shape
    rows = (torch.arange(h, device=regions.device)[None, :] - dy[:, None]) % h
    cols = (torch.arange(w, device=regions.device)[None, :] - dx[:, None]) % w
    return regions[sample[:, None, None], rows[:, :, None], cols[:, None, :]]


def counterfactual_removal(
    model: nn.Module,
    x: Tensor,
    attribution: Attribution,
    target: TargetLike = None,
    *,
    k: float = 10.0,
    n_random: int = 16,
    replacement: Replacement = "blur",
    value: float = 0.0,
    blur_sigma: float = 10.0,
    space: Space = "probability",
    seed: int = 0,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> CounterfactualRemoval:
    """Hide the top-``k``% of the map and see whether the prediction flips and how far the score falls,
    against hiding ``n_random`` random regions of the same shape and size.

    The random regions are the salient region itself, circularly shifted by random offsets drawn from
    ``seed`` (never by zero; the same offsets for every image). Scattered random pixels would not be a
    fair comparison: a compact region removes an object part while the same number of scattered pixels
    removes almost nothing a blur or a convolution cannot fill back in, so every map would "beat" them.
    A shifted copy keeps the shape, the size and the compactness, and changes only where it is.
    ``B * (1 + n_random)`` model passes, batched. Other arguments as :func:`deletion`.
    """
    k = percent("k", k)
    whole("n_random", n_random, "use e.g. n_random=16")
    how = Removal(replacement, value, blur_sigma, space, seed, chunk_size, memory_budget)
    x, sal = prepared(x, attribution)
    b, _, h, w = x.shape
    n_hide = count_of(k, h * w)
    regions = (removal_rank(sal.flatten(1)) < n_hide).view(b, h, w)
    offsets = torch.randint(1, h * w, (n_random,), generator=torch.Generator().manual_seed(seed))
    dy, dx = (offsets // w).to(x.device), (offsets % w).to(x.device)
    fill = how.fill(x, model)
    tobj, used_space = how.target(model, attribution, target)

    def make_rows(start: int, stop: int) -> tuple[Tensor, Tensor]:
        rows = torch.arange(start, stop)
        sample = rows // n_random
        img, j = sample.to(x.device), (rows % n_random).to(x.device)
        hidden = shifted(regions, img, dy[j], dx[j]).unsqueeze(1)
        return torch.where(hidden, fill[img], x[img]), sample

    with how.scoring(model, x, tobj) as scorer:
        output = scorer.outputs(torch.where(regions.unsqueeze(1), fill, x))  # B images, for the flip too
        hidden_scores = scorer.target(output).detach().float().cpu()
        random_scores, random_top = scorer.scores_and_top1(make_rows, b * n_random)
        random_scores = random_scores.cpu().view(b, n_random)
        clean = scorer.clean_scores.cpu()
        clean_top, hidden_top = top1(scorer.clean_output), top1(output)
        flipped = None if clean_top is None or hidden_top is None else hidden_top != clean_top
        random_flip_rate = None
        if clean_top is not None and random_top is not None:
            random_flip_rate = (random_top.view(b, n_random) != clean_top[:, None]).float().mean(dim=1)
    drop = clean - hidden_scores
    random_drops = clean[:, None] - random_scores
    random_mean = random_drops.mean(dim=1)
    return CounterfactualRemoval(
        clean_scores=clean,
        hidden_scores=hidden_scores,
        drop=drop,
        relative_drop=relative_to(drop, clean),
        flipped=flipped,
        random_drops=random_drops,
        random_drop_mean=random_mean,
        random_flip_rate=random_flip_rate,
        margin=drop - random_mean,
        beats_random=(random_drops < drop[:, None]).float().mean(dim=1),
        region_fraction=n_hide / (h * w),
        space=used_space,
        params=how.params(used_space, k=k, n_random=n_random),
        cost=finished_cost(scorer),
    )
