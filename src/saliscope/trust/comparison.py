"""The measured method comparison: every method on one image, judged on the same rows.

The seeds ask for a chart comparing methods on computation time, resolution, stability, faithfulness and
sanity, made from measurements rather than from folklore. :func:`compare_methods` explains the image with
each method and measures, per method:

- **time**: wall seconds of one explanation (median of ``timing_runs`` after a first, warming call);
- **detail**: the finest detail of the map in pixels (:func:`~saliscope.metrics.effective_resolution`);
- **stability**: mean Spearman rank correlation of the map with itself under a 1-px shift, a horizontal flip
  and 2% noise (:func:`~saliscope.metrics.consistency`);
- **faithfulness**: insertion AUC minus deletion AUC, both normalised by the clean score (Petsiuk et al.
  2018), with the two AUCs printed;
- **sanity**: the rank correlation left after the top of the model (classifier, head, last block) is
  re-initialised (Adebayo et al. 2018);
- **needs**: what the method asks of the model (any model, gradients, a spatial layer, attention).

It also runs every flag of :func:`~saliscope.trust.check` on the numbers already measured.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core.cost import Cost
from ..core.errors import InputError
from ..core.explanation import Explanation
from ..core.targets import TargetLike
from ..methods.base import Explainer
from ..viz.scorecard import Grade, ScoreRow
from .checks import CheckReport, judge, measure
from .thresholds import Grading, Thresholds

_NEEDS_GRADES: dict[str, Grade] = {
    "any model": "good", "gradients": "good", "a spatial layer": "moderate", "attention layers": "poor",
}


def requirement(explainer: Explainer) -> str:
    """What a method asks of the model: ``"any model"`` (forward passes only), ``"gradients"``,
    ``"a spatial layer"`` (the CAMs) or ``"attention layers"`` (the rollouts)."""
    from ..methods.cam import CAM
    from ..methods.perturbation.base import PerturbationExplainer
    from ..methods.transformer import AttentionRollout, GradientRollout

    inner = getattr(explainer, "inner", explainer)  # wrappers (SmoothGrad) ask what their method asks
    if isinstance(inner, (AttentionRollout, GradientRollout)):
        return "attention layers"
    if isinstance(inner, CAM):
        return "a spatial layer"
    if isinstance(inner, PerturbationExplainer):
        return "any model"
    return "gradients"


@dataclass(frozen=True)
class MethodResult:
    """One method's measurements on the image (per-image values are plain floats: one image)."""

    name: str
    explanation: Explanation
    seconds: float
    detail_px: float
    stability: float
    shift_rank_correlation: float
    deletion_auc: float
    insertion_auc: float
    randomised_rank_correlation: float
    needs: str
    report: CheckReport
    metrics_cost: Cost

    @property
    def faithfulness(self) -> float:
        return self.insertion_auc - self.deletion_auc

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.name, "seconds": self.seconds, "detail_px": self.detail_px, "stability": self.stability,
            "shift_rank_correlation": self.shift_rank_correlation, "deletion_auc": self.deletion_auc,
            "insertion_auc": self.insertion_auc, "faithfulness": self.faithfulness,
            "randomised_rank_correlation": self.randomised_rank_correlation, "needs": self.needs,
            "explain_cost": self.explanation.cost.as_dict(), "metrics_cost": self.metrics_cost.as_dict(),
            "checks": self.report.as_dict(),
        }


@dataclass(frozen=True)
class Comparison:
    """Every method's :class:`MethodResult`, and how the chart grades them."""

    results: tuple[MethodResult, ...]
    grading: Grading
    thresholds: Thresholds

    @property
    def methods(self) -> list[str]:
        return [r.name for r in self.results]

    def rows(self) -> list[ScoreRow]:
        """The chart's rows, graded by :attr:`grading`."""
        g, rs = self.grading, self.results
        return [
            ScoreRow("time (s / image)", [_num(r.seconds) for r in rs], [g.seconds.grade(r.seconds) for r in rs],
                     g.seconds.rule(" s")),
            ScoreRow("finest detail (px)", [_num(r.detail_px, 1) for r in rs],
                     [g.detail_px.grade(r.detail_px) for r in rs], g.detail_px.rule(" px")),
            ScoreRow("stability (rank corr.)", [_num(r.stability) for r in rs],
                     [g.stability.grade(r.stability) for r in rs], g.stability.rule()),
            ScoreRow("faithfulness (ins − del)",
                     [f"{r.faithfulness:+.2f} ({r.insertion_auc:.2f} / {r.deletion_auc:.2f})" for r in rs],
                     [g.faithfulness.grade(r.faithfulness) for r in rs], g.faithfulness.rule() + " (ins / del AUC)"),
            ScoreRow("sanity (rank corr. after randomising top)", [_num(r.randomised_rank_correlation) for r in rs],
                     [g.sanity.grade(r.randomised_rank_correlation) for r in rs], g.sanity.rule()),
            ScoreRow("needs", [r.needs for r in rs], [_NEEDS_GRADES[r.needs] for r in rs],
                     "good: any model or plain gradients; moderate: a spatial layer; poor: attention layers only"),
        ]

    def flags(self) -> list[tuple[str, str, str]]:
        """``(method, status, reason)`` of every failed check."""
        return [(r.name, v.status, f"{v.check}: {v.reason}") for r in self.results for v in r.report.failures]

    def as_dict(self) -> dict[str, Any]:
        return {"methods": [r.as_dict() for r in self.results]}


def _num(value: float, digits: int = 2) -> str:
    if value != value:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3f}"


def compare_methods(
    model: nn.Module,
    x: Tensor,
    explainers: Mapping[str, Explainer],
    target: TargetLike = None,
    *,
    thresholds: Thresholds = Thresholds(),
    grading: Grading = Grading(),
    timing_runs: int = 2,
    seed: int = 0,
    on_method: Callable[[str], None] | None = None,
) -> Comparison:
    """Explain one image ``x`` ``(1, C, H, W)`` with every explainer and measure the chart's rows.

    Args:
        model: the model every explainer explains (left exactly as found).
        explainers: ``{name: explainer}``, in the chart's column order.
        target: the class to explain (default: the predicted class), the same for every method.
        timing_runs: explanations per method; with 2 or more the first warms up and the time is the
            median of the others.
        on_method: called with each method's name before it runs (progress).
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise InputError(f"compare one image at a time, got a batch of shape {tuple(x.shape)}",
                         "pass x[:1] (one preprocessed image)")
    if not explainers:
        raise InputError("no methods to compare", "pass at least one explainer")
    from ..metrics.faithfulness import insertion
    from ..metrics.resolution import effective_resolution
    from ..metrics.robustness import consistency

    results = []
    for name, explainer in explainers.items():
        if on_method is not None:
            on_method(name)
        explanation = explainer.explain(x, target)
        times = [explanation.cost.seconds]
        for _ in range(max(0, timing_runs - 1)):
            t0 = time.perf_counter()
            explainer.explain(x, explanation.target)
            times.append(time.perf_counter() - t0)
        seconds = statistics.median(times[1:] if len(times) > 1 else times)
        found = measure(explanation, model, x, explainer=explainer,
                        checks=("map", "deletion", "sanity", "completeness"), thresholds=thresholds, seed=seed)
        steady = consistency(explainer, x, explanation.target, transforms=("shift1", "hflip", "noise"), seed=seed)
        found.shift_rank_correlation = [float(v) for v in steady.spearman[0]]
        found.add_cost(steady.cost)
        inserted = insertion(model, x, explanation, explanation.target, steps=thresholds.deletion_steps, seed=seed)
        found.add_cost(inserted.cost)
        report = judge(found, thresholds=thresholds)
        assert found.deletion_auc is not None and found.randomised_rank_correlation is not None
        results.append(MethodResult(
            name=name,
            explanation=explanation,
            seconds=float(seconds),
            detail_px=float(effective_resolution(explanation).detail_px[0]),
            stability=float(torch.nan_to_num(steady.spearman[:, 0], nan=0.0).mean()),
            shift_rank_correlation=found.shift_rank_correlation[0],
            deletion_auc=found.deletion_auc[0],
            insertion_auc=float(inserted.normalized_auc[0]),
            randomised_rank_correlation=found.randomised_rank_correlation[0],
            needs=requirement(explainer),
            report=report,
            metrics_cost=found.cost if found.cost is not None else Cost(0, 0, 0, 0.0, None),
        ))
    return Comparison(tuple(results), grading, thresholds)
