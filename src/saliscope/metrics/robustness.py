"""Robustness: does the explanation stay put when the input barely changes?

- :func:`max_sensitivity` / :func:`avg_sensitivity` — Yeh et al., "On the (In)fidelity and Sensitivity of
  Explanations", NeurIPS 2019: the largest / mean change ``||Φ(x+δ) − Φ(x)||`` over perturbations ``δ``
  drawn uniformly from the L∞ ball of radius ``r``, estimated by Monte Carlo.
- :func:`consistency` — the map of a near-identical input (small noise, a 1–2 px shift, a horizontal flip),
  mapped back onto the original's pixels, compared with the original map by Spearman rank correlation and
  top-k IoU.

These metrics re-run an *explainer*, not only the model. The target is bound once on the clean input
(the class the clean explanation explained) so every altered copy explains that same class, and all the
altered copies go through one ``explain`` call, which the explainer runs in memory-bounded chunks.
Altered copies are the same for every image of a batch (drawn from ``seed``), so a batch gives what each
image gives alone. Seed stochastic explainers (SmoothGrad, RISE, LIME), or their own randomness is
measured as instability too.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.cost import Cost
from ..core.errors import InputError, MethodError
from ..core.explanation import Explanation
from ..core.targets import TargetLike
from ..core.validation import check_batch, real, whole
from ..core.views import FlatMapWarning
from ..methods.base import Explainer
from .results import floats
from .similarity import check_percent, evidence_maps, spearman, top_k_overlap

Norm = Literal["l2", "linf"]
Evidence = Literal["absolute", "signed"]
Transform = Literal["noise", "shift1", "shift2", "hflip"]
TRANSFORMS: tuple[Transform, ...] = ("noise", "shift1", "shift2", "hflip")


def check_explainer(explainer: object) -> Explainer:
    if not isinstance(explainer, Explainer):
        raise MethodError(
            f"this metric re-runs an explainer, got {type(explainer).__name__}",
            "pass the explainer itself, e.g. saliscope.Gradient(model)",
        )
    return explainer


def reuse_or_explain(
    explainer: Explainer, x: Tensor, target: TargetLike, clean: Explanation | None
) -> tuple[Explanation, Cost]:
    """The clean explanation of ``x`` — ``clean`` when the caller has it, else made now — and its cost to
    this metric (nothing for one handed in)."""
    if clean is None:
        made = explainer.explain(x, target)
        return made, made.cost
    if (
        not isinstance(clean, Explanation)
        or len(clean) != int(x.shape[0])
        or clean.attributions.shape[-2:] != x.shape[-2:]
    ):
        raise InputError(
            "clean= must be the explainer's Explanation of this very batch x",
            "pass what explainer.explain(x, target) returned, or omit clean=",
        )
    return clean, Cost(0, 0, 0, 0.0, None)


def value_range(x: Tensor) -> Tensor:
    """``(B, 1, 1, 1)`` each image's max − min (1 for a flat image, so a radius stays absolute there)."""
    span = (x.amax((1, 2, 3)) - x.amin((1, 2, 3))).view(-1, 1, 1, 1)
    return torch.where(span > 0, span, torch.ones_like(span))


def explain_copies(explainer: Explainer, clean: Explanation, copies: Tensor, n: int) -> Explanation:
    """Explain ``copies`` ``(n * B, C, H, W)`` — copy ``j`` of every image at rows ``j*B … j*B+B−1`` —
    against the clean explanation's bound target, in one call."""
    batch = len(clean)
    return explainer.explain(copies, clean.target.take(torch.arange(batch).repeat(n)))


# -- sensitivity (Yeh et al. 2019) -------------------------------------------------------------------------


@dataclass(frozen=True)
class SensitivityResult:
    """Max- or average-sensitivity of an explainer on a batch.

    Attributes:
        sensitivity: ``(B,)`` per image, the max (or mean) of ``distances`` over the perturbations (also
            :attr:`value`). Lower is better: 0 means the explanation did not move at all.
        distances: ``(B, n_samples)`` ``||Φ(x+δ_j) − Φ(x)||``, divided by ``||Φ(x)||`` when ``normalised``.
        statistic: ``"max"`` or ``"average"``.
        radius: the L∞ radius as a fraction of each image's value range (max − min).
        norm: ``"l2"`` (Frobenius norm over all of the map's elements) or ``"linf"``.
        normalised: whether distances are relative to the clean map's norm.
        cost: the passes of the clean and the perturbed explanations together.
    """

    sensitivity: Tensor
    distances: Tensor
    statistic: Literal["max", "average"]
    radius: float
    norm: Norm
    normalised: bool
    cost: Cost
    higher_is_better: ClassVar[bool] = False

    @property
    def value(self) -> Tensor:
        """``(B,)`` the headline number: the sensitivity."""
        return self.sensitivity

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": f"{self.statistic}-sensitivity",
            "higher_is_better": False,
            "sensitivity": floats(self.sensitivity),
            "radius": self.radius,
            "norm": self.norm,
            "normalised": self.normalised,
            "n_samples": int(self.distances.shape[1]),
            "cost": self.cost.as_dict(),
        }


def max_sensitivity(
    explainer: Explainer,
    x: Tensor,
    target: TargetLike = None,
    *,
    n_samples: int = 10,
    radius: float = 0.02,
    norm: Norm = "l2",
    normalise: bool = True,
    seed: int = 0,
) -> SensitivityResult:
    """Max-sensitivity (Yeh et al. 2019): ``max_j ||Φ(x+δ_j) − Φ(x)|| / ||Φ(x)||``.

    Args:
        explainer: the method to judge, e.g. ``saliscope.Gradient(model)``.
        x: ``(B, C, H, W)`` preprocessed batch (never modified).
        target: what to explain (default: the predicted class); bound once on the clean input.
        n_samples: Monte-Carlo perturbations per image; cost is ``1 + n_samples`` explanations per image.
        radius: half-width of the L∞ ball, as a fraction of each image's value range (max − min): 0.02 on
            an image spanning [−1, 1] lets every value move by up to ±0.04.
        norm: ``"l2"`` (Frobenius, as in the paper and Quantus) or ``"linf"``.
        normalise: divide by ``||Φ(x)||``, as Quantus does, so that methods of different scale compare.
        seed: seeds the perturbations (the same draws for every image of the batch).

    Returns:
        :class:`SensitivityResult` with ``sensitivity`` ``(B,)``.
    """
    return _sensitivity(explainer, x, target, "max", n_samples, radius, norm, normalise, seed)


def avg_sensitivity(
    explainer: Explainer,
    x: Tensor,
    target: TargetLike = None,
    *,
    n_samples: int = 10,
    radius: float = 0.02,
    norm: Norm = "l2",
    normalise: bool = True,
    seed: int = 0,
) -> SensitivityResult:
    """Average-sensitivity (Yeh et al. 2019): the mean of ``||Φ(x+δ_j) − Φ(x)|| / ||Φ(x)||`` over ``δ_j``.

    Same arguments as :func:`max_sensitivity`; the mean estimates the paper's integral over the ball.
    """
    return _sensitivity(explainer, x, target, "average", n_samples, radius, norm, normalise, seed)


def _sensitivity(
    explainer: Explainer,
    x: Tensor,
    target: TargetLike,
    statistic: Literal["max", "average"],
    n_samples: int,
    radius: float,
    norm: Norm,
    normalise: bool,
    seed: int,
) -> SensitivityResult:
    explainer = check_explainer(explainer)
    x = check_batch(x)
    n_samples = whole("n_samples", n_samples, "use e.g. n_samples=10")
    radius = real("radius", radius, "use e.g. radius=0.02 (2 % of the value range)", above=0)
    if norm not in ("l2", "linf"):
        raise InputError(f"unknown norm {norm!r}", "use 'l2' or 'linf'")
    clean = explainer.explain(x, target)
    generator = torch.Generator().manual_seed(seed)
    # Uniform in the unit L∞ ball, drawn on the CPU so a seed gives the same draws on every device.
    unit = torch.rand((n_samples, *x.shape[1:]), generator=generator) * 2 - 1
    step = (radius * value_range(x.detach())).to(x.dtype)  # (B, 1, 1, 1)
    delta = unit.to(x.device, x.dtype)[:, None] * step[None]  # (n, B, C, H, W)
    copies = (x.detach()[None] + delta).flatten(0, 1)
    perturbed = explain_copies(explainer, clean, copies, n_samples)

    phi = clean.attributions.detach().double().flatten(1)  # (B, D)
    moved = perturbed.attributions.detach().double().flatten(1).view(n_samples, *phi.shape)
    distances = _norm(moved - phi[None], norm).T.cpu()  # (B, n)
    if normalise:
        size = _norm(phi, norm)[:, None].cpu()
        flat = (size[:, 0] == 0).nonzero().flatten().tolist()
        if flat:
            warnings.warn(
                FlatMapWarning(
                    f"the clean map of image(s) {flat} is zero everywhere: relative sensitivity is 0 where it stays "
                    "zero and inf where it moves; pass normalise=False for absolute distances"
                ),
                stacklevel=3,
            )
        # A zero map that stays zero has not moved (0); one that moves has moved infinitely far relative to it.
        distances = torch.where(
            size > 0,
            distances / size.clamp(min=torch.finfo(torch.float64).tiny),
            torch.where(distances > 0, torch.inf, 0.0),
        )
    values = distances.amax(1) if statistic == "max" else distances.mean(1)
    return SensitivityResult(values, distances, statistic, float(radius), norm, normalise, clean.cost + perturbed.cost)


def _norm(t: Tensor, norm: Norm) -> Tensor:
    return t.abs().amax(-1) if norm == "linf" else t.pow(2).sum(-1).sqrt()


# -- consistency over near-identical inputs ----------------------------------------------------------------

# A transform: (alter the batch, then take (original map, altered map) to the same pixels: both (B, 1, h, w)).
_Alter = Callable[[Tensor], Tensor]
_MapBack = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


def _shift(pixels: int) -> tuple[_Alter, _MapBack]:
    """Move the image ``pixels`` down and right, filling the uncovered edge by repeating the border; map back
    by the inverse shift and compare only the pixels both images show."""

    def alter(x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        return F.pad(x, (pixels, 0, pixels, 0), mode="replicate")[..., :h, :w]

    def back(original: Tensor, altered: Tensor) -> tuple[Tensor, Tensor]:
        return original[..., :-pixels, :-pixels], altered[..., pixels:, pixels:]

    return alter, back


def _noise(sigma: float, seed: int) -> tuple[_Alter, _MapBack]:
    def alter(x: Tensor) -> Tensor:
        unit = torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(seed)).to(x.device, x.dtype)
        return x + (sigma * value_range(x)).to(x.dtype) * unit

    return alter, lambda original, altered: (original, altered)


def _hflip() -> tuple[_Alter, _MapBack]:
    return (lambda x: x.flip(-1)), (lambda original, altered: (original, altered.flip(-1)))


@dataclass(frozen=True)
class ConsistencyResult:
    """How much an explanation agrees with itself over near-identical inputs.

    Attributes:
        transforms: the transforms, in the order of the rows below.
        spearman: ``(T, B)`` Spearman rank correlation between the original map and the altered input's map
            mapped back onto the original pixels. Higher is better (1: same ranking).
        iou: ``(T, B)`` intersection over union of the two maps' top ``top_k`` % pixels. Higher is better.
            :attr:`value` is the Spearman correlation averaged over the transforms, ``(B,)``.
        top_k: the percentage of the compared pixels counted as "top".
        evidence: ``"absolute"`` (sum of |attribution| over channels) or ``"signed"`` maps were compared.
        cost: the passes of the clean and the altered explanations together.
    """

    transforms: tuple[str, ...]
    spearman: Tensor
    iou: Tensor
    top_k: float
    evidence: Evidence
    cost: Cost
    higher_is_better: ClassVar[bool] = True

    @property
    def value(self) -> Tensor:
        """``(B,)`` the headline number: the rank correlation averaged over the transforms."""
        return self.spearman.mean(0)

    def as_dict(self) -> dict[str, Any]:
        per = {
            name: {"spearman": floats(self.spearman[i]), "iou": floats(self.iou[i])}
            for i, name in enumerate(self.transforms)
        }
        return {
            "metric": "consistency",
            "higher_is_better": True,
            "value": floats(self.value),
            "transforms": per,
            "top_k": self.top_k,
            "evidence": self.evidence,
            "cost": self.cost.as_dict(),
        }


def consistency(
    explainer: Explainer,
    x: Tensor,
    target: TargetLike = None,
    *,
    transforms: Sequence[Transform] = TRANSFORMS,
    noise: float = 0.02,
    top_k: float = 10.0,
    evidence: Evidence = "absolute",
    seed: int = 0,
    clean: Explanation | None = None,
) -> ConsistencyResult:
    """Consistency of the explanation over near-identical inputs.

    Transforms: ``"noise"`` adds Gaussian noise of standard deviation ``noise`` × the image's value range
    (seeded); ``"shift1"`` / ``"shift2"`` move the image 1 / 2 px down and right (the uncovered edge
    repeats the border) and the map is shifted back, comparing only the pixels both show; ``"hflip"``
    mirrors the image and the map is mirrored back. A model that "sees" the same object should give the
    same map; CNNs with stride are known not to be shift-invariant (Zhang, "Making Convolutional
    Networks Shift-Invariant Again", ICML 2019), which this metric makes visible.

    Args:
        explainer: the method to judge.
        x: ``(B, C, H, W)`` preprocessed batch (never modified).
        target: what to explain (default: the predicted class); bound once on the clean input.
        transforms: which of ``"noise"``, ``"shift1"``, ``"shift2"``, ``"hflip"`` to run.
        noise: the noise's standard deviation as a fraction of each image's value range.
        top_k: the percentage of (compared) pixels whose overlap the IoU measures: 10 = the top 10 %.
        evidence: compare ``"absolute"`` maps (the sum over channels of |attribution|) or ``"signed"`` ones.
        seed: seeds the noise (the same draw for every image of the batch).
        clean: ``explainer``'s explanation of ``x`` when it is at hand (then ``target`` is its target and
            it is not made again; its cost is not counted here).

    Returns:
        :class:`ConsistencyResult` with ``(T, B)`` tensors. Costs ``1 + T`` explanations per image (``T``
        with ``clean``).
    """
    explainer = check_explainer(explainer)
    x = check_batch(x)
    names = tuple(transforms)
    unknown = [t for t in names if t not in TRANSFORMS]
    if unknown or not names:
        raise InputError(f"unknown or no transforms: {unknown or 'none given'}", f"use some of {', '.join(TRANSFORMS)}")
    if len(set(names)) != len(names):
        raise InputError(f"a transform is listed twice: {list(names)}", "list each transform once")
    noise = real("noise", noise, "use e.g. noise=0.02 (2 % of the value range)", at_least=0)
    if evidence not in ("absolute", "signed"):
        raise InputError(f"unknown evidence {evidence!r}", "use 'absolute' or 'signed'")
    top_k = check_percent("top_k", top_k)
    if min(x.shape[-2:]) <= 2 and any(t.startswith("shift") for t in names):
        raise InputError(f"images of {tuple(x.shape[-2:])} px are too small to shift", "drop the shift transforms")
    steps = {
        "noise": lambda: _noise(noise, seed),
        "shift1": lambda: _shift(1),
        "shift2": lambda: _shift(2),
        "hflip": _hflip,
    }
    plan = [steps[name]() for name in names]

    clean, clean_cost = reuse_or_explain(explainer, x, target, clean)
    source = x.detach()
    altered = explain_copies(explainer, clean, torch.cat([alter(source) for alter, _ in plan]), len(plan))

    original = evidence_maps(clean.attributions, evidence)
    maps = evidence_maps(altered.attributions, evidence).view(len(plan), *original.shape)
    rho, iou = [], []
    for (_, back), moved in zip(plan, maps, strict=True):
        a, b = back(original, moved)
        rho.append(spearman(a, b))
        iou.append(top_k_overlap(a, b, k=top_k))
    return ConsistencyResult(
        names, torch.stack(rho), torch.stack(iou), float(top_k), evidence, clean_cost + altered.cost
    )
