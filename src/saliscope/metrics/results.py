"""Result types shared by the metrics: a score curve, and turning tensors into JSON-friendly lists.

Every metric returns a frozen dataclass of per-sample tensors (on the CPU) with ``as_dict()``; curve
metrics (deletion, insertion, pixel flipping) all return a :class:`Curve`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..core.cost import Cost
from ..core.errors import InputError


def floats(values: Tensor) -> list[Any]:
    """A tensor as nested lists of floats, with NaN / Inf as ``None`` (JSON has neither)."""
    out = values.detach().cpu().double().tolist()
    return _finite_or_none(out)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, bool):
        return value
    return float(value) if math.isfinite(value) else None


def relative_to(values: Tensor, reference: Tensor) -> Tensor:
    """``values / reference`` per sample, NaN where the reference is (numerically) zero."""
    tiny = torch.finfo(torch.float32).tiny
    safe = torch.where(reference.abs() > tiny, reference, torch.ones_like(reference))
    return torch.where(reference.abs() > tiny, values / safe, torch.full_like(values, math.nan))


def record(result: Any, metric: str, tensors: Iterable[str], **more: Any) -> dict[str, Any]:
    """A metric result as JSON-friendly data: its name, direction, space, parameters, ``more``, each named
    tensor as lists of floats, and its cost — what every result's ``as_dict()`` returns."""
    out: dict[str, Any] = {
        "metric": metric,
        "higher_is_better": result.higher_is_better,
        "space": result.space,
        "params": dict(result.params),
        **more,
    }
    for name in tensors:
        out[name] = floats(getattr(result, name))
    out["cost"] = result.cost.as_dict()
    return out


def normalised(values: Tensor, clean: Tensor, space: str) -> Tensor:
    """``values / clean`` per sample, where the clean score is positive by construction (a softmax
    probability); refused in any other space, where a negative clean score would flip the sign (and the
    ranking) and one near 0 would blow the ratio up."""
    if space != "probability":
        raise InputError(
            f"a normalised AUC divides by the clean score, which is positive only as a probability; these "
            f"scores are in {space!r} space, where a negative or near-zero clean score would flip or blow up "
            "the ratio",
            "use .auc (the raw area), or measure with space='probability'",
        )
    return relative_to(values, clean)


@dataclass(frozen=True)
class Curve:
    """Target scores as a growing share of the input is removed (or inserted).

    Attributes:
        metric: ``"deletion"``, ``"insertion"``, ``"morf"`` or ``"lerf"``.
        fractions: ``(S+1,)`` share of the pixels (or patches) removed / inserted at each step, 0 … 1.
        scores: ``(B, S+1)`` the target's score at each step; for deletion ``scores[:, 0]`` is the clean
            score, for insertion ``scores[:, -1]`` is.
        clean_scores: ``(B,)`` the target's score on the clean input.
        auc: ``(B,)`` area under the curve, trapezoid rule over ``fractions`` in [0, 1].
        normalized_auc: ``(B,)`` ``auc / clean_scores``, in probability space only (where the clean score is
            positive by construction); asking for it in logit or target space raises, naming ``auc``.
        aopc: ``(B,)`` area over the perturbation curve, ``mean_s (clean - scores[:, s])`` (Samek et al.
            2017); for deletion-type curves higher is better.
        higher_is_better: whether a larger ``auc`` means a more faithful map.
        space: what the scores are: ``"probability"``, ``"logit"``, or ``"target"`` (a target that is not
            a class score, scored as it defines).
        params: the metric's parameters (JSON-friendly).
        cost: model passes, seconds and peak memory of the whole metric.
    """

    metric: str
    fractions: Tensor
    scores: Tensor
    clean_scores: Tensor
    auc: Tensor
    aopc: Tensor
    higher_is_better: bool
    space: str
    params: Mapping[str, Any]
    cost: Cost

    @property
    def value(self) -> Tensor:
        """``(B,)`` the headline number: the AUC."""
        return self.auc

    @property
    def normalized_auc(self) -> Tensor:
        """``(B,)`` ``auc / clean_scores``; probability space only (see :func:`normalised`)."""
        return normalised(self.auc, self.clean_scores, self.space)

    def as_dict(self) -> dict[str, Any]:
        names = ["fractions", "scores", "clean_scores", "auc", "aopc"]
        out = record(self, self.metric, names)
        out["normalized_auc"] = floats(self.normalized_auc) if self.space == "probability" else None
        return out
