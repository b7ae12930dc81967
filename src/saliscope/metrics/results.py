"""Result types shared by the metrics: a score curve, and turning tensors into JSON-friendly lists.

Every metric returns a frozen dataclass of per-sample tensors (on the CPU) with ``as_dict()``; curve
metrics (deletion, insertion, pixel flipping) all return a :class:`Curve`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..core.cost import Cost


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
        normalized_auc: ``(B,)`` ``auc / clean_scores`` (NaN where the clean score is 0).
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
    normalized_auc: Tensor
    aopc: Tensor
    higher_is_better: bool
    space: str
    params: Mapping[str, Any]
    cost: Cost

    @property
    def value(self) -> Tensor:
        """``(B,)`` the headline number: the AUC."""
        return self.auc

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "space": self.space,
            "params": dict(self.params),
            "fractions": floats(self.fractions),
            "scores": floats(self.scores),
            "clean_scores": floats(self.clean_scores),
            "auc": floats(self.auc),
            "normalized_auc": floats(self.normalized_auc),
            "aopc": floats(self.aopc),
            "cost": self.cost.as_dict(),
        }
