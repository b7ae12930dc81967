"""Completeness of path methods: do the attributions add up to the score change along the path?

Integrated Gradients satisfies completeness (Sundararajan, Taly & Yan 2017, "Axiomatic Attribution for
Deep Networks", ICML): ``sum(attributions) = f(x) - f(baseline)`` exactly for the true integral. The
quadrature leaves a gap, which the explanation already carries (no model pass needed here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from ..core.errors import InputError, MethodError
from ..core.explanation import Explanation
from .results import floats, relative_to


@dataclass(frozen=True)
class CompletenessGap:
    """Per image: ``gap = sum(attributions) - (f(x) - f(baseline))`` ``(B,)``, its magnitude
    ``absolute_gap``, the score change ``f(x) - f(baseline)``, and ``relative_gap = |gap| / |f(x) - f(baseline)|``
    (NaN where the score does not change). Lower is better; 0 is exact completeness."""

    gap: Tensor
    absolute_gap: Tensor
    score_change: Tensor
    relative_gap: Tensor
    higher_is_better: ClassVar[bool] = False

    @property
    def value(self) -> Tensor:
        return self.relative_gap

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": "completeness-gap",
            "higher_is_better": False,
            "gap": floats(self.gap),
            "absolute_gap": floats(self.absolute_gap),
            "score_change": floats(self.score_change),
            "relative_gap": floats(self.relative_gap),
        }


def completeness_gap(explanation: Explanation) -> CompletenessGap:
    """The completeness gap an explanation of a path method carries, absolute and relative.

    Uses ``explanation.completeness_gap`` and the extras ``input_scores`` / ``baseline_scores`` that
    :class:`~saliscope.IntegratedGradients` records.
    """
    if not isinstance(explanation, Explanation):
        raise InputError(
            f"completeness needs an Explanation, got {type(explanation).__name__}",
            "pass the Explanation that IntegratedGradients(...).explain() returned, not its attributions",
        )
    if explanation.completeness_gap is None:
        raise MethodError(
            f"the {explanation.method!r} explanation carries no completeness gap: completeness is a property "
            "of path methods",
            "explain with saliscope.IntegratedGradients (which records the gap), or leave this metric out",
        )
    gap = explanation.completeness_gap.detach().float().cpu()
    change = _score_change(explanation, gap)
    return CompletenessGap(
        gap=gap, absolute_gap=gap.abs(), score_change=change, relative_gap=relative_to(gap.abs(), change.abs())
    )


def _score_change(explanation: Explanation, gap: Tensor) -> Tensor:
    extras = explanation.extras
    if "input_scores" in extras and "baseline_scores" in extras:
        return (extras["input_scores"] - extras["baseline_scores"]).detach().float().cpu()
    # sum(attr) - gap is the score change by the gap's own definition, for methods that record no extras.
    return explanation.attributions.detach().flatten(1).sum(dim=1).float().cpu() - gap
