"""The measured method comparison: every method on one image, judged on the same rows.

The seeds ask for a chart comparing methods on computation time, resolution, stability, faithfulness and
sanity, made from measurements rather than from folklore. :func:`compare_methods` explains the image with
each method and measures, per method:

- **time**: wall seconds of one explanation. A method whose first explanation took a second or more is
  timed by that call alone (re-running it would multiply the comparison's cost by little gain in
  precision); a cheaper method is warmed up by its first call, then explained ``timing_runs`` more times
  and the fastest of those is reported: other processes only ever add time, so the minimum is the run
  they disturbed least;
- **detail**: the finest detail of the map in pixels (:func:`~saliscope.metrics.effective_resolution`);
- **stability**: mean Spearman rank correlation of the map with itself under a 1-px shift, a horizontal flip
  and 2% noise (:func:`~saliscope.metrics.consistency`);
- **faithfulness**: insertion AUC minus deletion AUC, both normalised by the clean score (Petsiuk et al.
  2018), with the two AUCs printed;
- **sanity**: the rank correlation left after the top of the model (classifier, head, last block) is
  re-initialised (Adebayo et al. 2018);
- **needs**: what the method asks of the model (any model, gradients, a spatial layer, attention): a
  description, not graded.

Every row judges one map per method: the view the comparison figure shows (:func:`saliscope.viz.display_hint`,
e.g. Gradient's largest magnitude over colour channels, Grad-CAM's positive part), never the raw signed sum
for one row and a magnitude for another. The flags of :func:`~saliscope.trust.check` are judged on the
numbers measured on that same view.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure
from torch import Tensor, nn

from ..core.cost import Cost, CostMeter
from ..core.errors import InputError
from ..core.explanation import Explanation
from ..core.targets import BoundTarget, TargetLike
from ..core.validation import whole
from ..core.views import Evidence
from ..methods.base import Attribution, Explainer
from ..viz.display import DisplayHint, display_hint
from ..viz.files import png_bytes
from ..viz.scorecard import ScoreRow, scorecard_figure
from .checks import CHECKS, CheckReport, Measurements, comparable_auc, judge, measure
from .thresholds import Grading, Thresholds

if TYPE_CHECKING:
    from ..metrics.robustness import Transform

_TIME_ONCE_AFTER_S = 1.0
STABILITY_TRANSFORMS: tuple[Transform, ...] = ("shift1", "hflip", "noise")


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


_EVIDENCE_WORDS = {
    "signed": "signed",
    "positive": "positive part",
    "negative": "negative part",
    "absolute": "magnitude",
}
_REDUCE_WORDS = {
    "sum": "RGB summed",
    "mean": "RGB averaged",
    "sum-abs": "sum of |RGB|",
    "max-abs": "max |RGB|",
    "l2": "L2 over RGB",
}


def view_label(view: DisplayHint, channels: int = 1) -> str:
    """The map a method is shown and scored on, in words: ``"magnitude (max |RGB|)"``, ``"positive part"``."""
    words = _EVIDENCE_WORDS[view.evidence]
    return f"{words} ({_REDUCE_WORDS.get(view.reduce, view.reduce)})" if channels > 1 else words


def shown(explanation: Explanation, view: DisplayHint) -> Explanation:
    """The explanation with the shown map ``(B, 1, H, W)`` as its attributions: what every metric then ranks."""
    return replace(explanation, attributions=explanation.saliency(view.reduce, view.evidence))


class ShownMaps(Explainer):
    """``inner``'s maps as shown: stability and sanity re-run the method and compare this view of its maps.

    The metrics compare the channel sum of what an explainer returns; one channel that already is the
    shown map makes that sum the map itself.
    """

    def __init__(self, inner: Explainer, view: DisplayHint) -> None:
        super().__init__(inner.model, precision=inner.precision)
        self.inner, self.view = inner, view
        self.name = inner.name  # type: ignore[misc]

    def explain(self, x: Tensor, target: TargetLike = None) -> Explanation:
        return shown(self.inner.explain(x, target), self.view)

    def _attribute(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        raise NotImplementedError("ShownMaps explains through its inner explainer")  # explain() is overridden


@dataclass(frozen=True)
class MethodResult:
    """One method's measurements on the image (per-image values are plain floats: one image).

    ``view`` is the map every row judged (and the figure shows); ``seconds`` the fastest of ``timed_runs``
    explanations (1: the first call alone); ``elapsed_s`` the wall time this method took in the
    comparison, explanations and measurements together.
    """

    name: str
    explanation: Explanation
    view: DisplayHint
    seconds: float
    timed_runs: int
    detail_px: float
    stability: float
    shift_rank_correlation: float
    deletion_auc: float
    insertion_auc: float
    randomised_rank_correlation: float
    needs: str
    report: CheckReport
    metrics_cost: Cost
    elapsed_s: float = float("nan")

    @property
    def faithfulness(self) -> float:
        return self.insertion_auc - self.deletion_auc

    @property
    def scored_on(self) -> str:
        return view_label(self.view, int(self.explanation.attributions.shape[1]))

    def shown_map(self) -> Tensor:
        """``(1, 1, H, W)``: the map shown and scored."""
        return self.explanation.saliency(self.view.reduce, self.view.evidence)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "seconds": self.seconds,
            "timed_runs": self.timed_runs,
            "detail_px": self.detail_px,
            "stability": self.stability,
            "shift_rank_correlation": self.shift_rank_correlation,
            "deletion_auc": self.deletion_auc,
            "insertion_auc": self.insertion_auc,
            "faithfulness": self.faithfulness,
            "randomised_rank_correlation": self.randomised_rank_correlation,
            "needs": self.needs,
            "scored_on": {"reduce": self.view.reduce, "evidence": self.view.evidence, "label": self.scored_on},
            "elapsed_s": self.elapsed_s,
            "explain_cost": self.explanation.cost.as_dict(),
            "metrics_cost": self.metrics_cost.as_dict(),
            "checks": self.report.as_dict(),
        }


@dataclass(frozen=True)
class Comparison:
    """Every method's :class:`MethodResult`, and how the chart grades them."""

    results: tuple[MethodResult, ...]
    grading: Grading
    thresholds: Thresholds
    timing_runs: int = 3

    @property
    def methods(self) -> list[str]:
        return [r.name for r in self.results]

    @property
    def timing_rule(self) -> str:
        return (
            f"time: the fastest of {self.timing_runs} explanations after a warm-up call; a method whose "
            f"first call took ≥ {_TIME_ONCE_AFTER_S:g} s is timed by that call alone"
        )

    def rows(self) -> list[ScoreRow]:
        """The chart's rows, graded by :attr:`grading` (the ``needs`` row is not graded)."""
        g, rs = self.grading, self.results
        stages = self.thresholds.sanity_stages
        return [
            ScoreRow(
                "time (s / image)",
                [_num(r.seconds) for r in rs],
                [g.seconds.grade(r.seconds) for r in rs],
                g.seconds.rule(" s"),
                f"fastest of {self.timing_runs} after a warm-up; first call if ≥ {_TIME_ONCE_AFTER_S:g} s",
                [_timed(r.timed_runs) for r in rs],
            ),
            ScoreRow(
                "finest detail (px)",
                [_num(r.detail_px, 1) for r in rs],
                [g.detail_px.grade(r.detail_px) for r in rs],
                g.detail_px.rule(" px"),
                "half-period holding 90% of the map's spectral energy",
            ),
            ScoreRow(
                "stability",
                [_num(r.stability) for r in rs],
                [g.stability.grade(r.stability) for r in rs],
                g.stability.rule(),
                "mean rank corr. with the map under a 1-px shift, a flip, 2% noise",
                [f"shift alone {_num(r.shift_rank_correlation)}" for r in rs],
            ),
            ScoreRow(
                "faithfulness",
                [_num(r.faithfulness, sign=True) for r in rs],
                [g.faithfulness.grade(r.faithfulness) for r in rs],
                g.faithfulness.rule(),
                "insertion AUC − deletion AUC; random ≈ 0",
                [f"ins {_num(r.insertion_auc)} − del {_num(r.deletion_auc)}" for r in rs],
            ),
            ScoreRow(
                "sanity",
                [_num(r.randomised_rank_correlation) for r in rs],
                [g.sanity.grade(r.randomised_rank_correlation) for r in rs],
                g.sanity.rule(),
                f"rank corr. left after re-initialising the top {stages} stages",
            ),
            ScoreRow("needs", [r.needs for r in rs], None, "", "what the method asks of the model"),
        ]

    def figure(self, *, title: str = "measured on this image", width: float | None = None) -> Figure:
        """The chart as a figure: one column per method, one row per quality, each cell graded; the timing
        rule and every flag as footnotes."""
        from ..viz.notebook import method_title

        titles = [method_title(r.name) for r in self.results]
        by_method: dict[str, list[str]] = {}
        for r, t in zip(self.results, titles, strict=True):
            for v in r.report.failures:
                by_method.setdefault(t, []).append(f"{v.check}: {v.reason}")
        flags = [f"Flag, {t}: " + "; ".join(lines) for t, lines in by_method.items()] or [
            "Flags: none; every method passed every check."
        ]
        return scorecard_figure(
            titles,
            self.rows(),
            title=title,
            subtitles=[r.scored_on for r in self.results],
            subtitle_name="map shown and scored:",
            footnotes=[self.timing_rule + ".", *flags],
            width=width,
        )

    def _repr_png_(self) -> bytes:
        """A notebook shows the comparison as its chart."""
        return png_bytes(self.figure())

    def flags(self) -> list[tuple[str, str, str]]:
        """``(method, status, reason)`` of every failed check."""
        return [(r.name, v.status, f"{v.check}: {v.reason}") for r in self.results for v in r.report.failures]

    def as_dict(self) -> dict[str, Any]:
        return {
            "timing": self.timing_rule,
            "rows": [row.as_dict() for row in self.rows()],
            "methods": [r.as_dict() for r in self.results],
        }


def _num(value: float, digits: int = 2, *, sign: bool = False) -> str:
    if value != value:
        return "n/a"
    plus = "+" if sign else ""
    if abs(value) >= 100:
        return f"{value:{plus}.0f}"
    return f"{value:{plus}.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:{plus}.3f}"


def _timed(runs: int) -> str:
    return "first call only" if runs == 1 else f"min of {runs} runs"


def compare_methods(
    model: nn.Module,
    x: Tensor,
    explainers: Mapping[str, Explainer],
    target: TargetLike = None,
    *,
    thresholds: Thresholds = Thresholds(),
    grading: Grading = Grading(),
    timing_runs: int = 3,
    evidence: Evidence | None = None,
    seed: int = 0,
    on_method: Callable[[str], None] | None = None,
    on_result: Callable[[MethodResult], None] | None = None,
) -> Comparison:
    """Explain one image ``x`` ``(1, C, H, W)`` with every explainer and measure the chart's rows.

    Args:
        model: the model every explainer explains (left exactly as found).
        explainers: ``{name: explainer}``, in the chart's column order.
        target: the class to explain (default: the predicted class), the same for every method.
        timing_runs: timed explanations per method after a first, warming call; the time is their
            minimum (the run least disturbed by other processes). A method whose first call took a second
            or more is timed by that call alone.
        evidence: the evidence every method is shown and scored on (``--evidence``); None: each method's
            own (:func:`saliscope.viz.display_hint`).
        seed: seeds the noise, the chance maps and the randomised weights.
        on_method: called with each method's name before it runs; ``on_result`` with its result after.
    """
    if x.ndim != 4 or x.shape[0] != 1:
        raise InputError(
            f"compare one image at a time, got a batch of shape {tuple(x.shape)}", "pass x[:1] (one preprocessed image)"
        )
    if not explainers:
        raise InputError("no methods to compare", "pass at least one explainer")
    timing_runs = whole("timing_runs", timing_runs, "use e.g. timing_runs=3")
    results = []
    for name, explainer in explainers.items():
        if on_method is not None:
            on_method(name)
        started = time.perf_counter()
        result = _measure_one(
            name,
            explainer,
            model,
            x,
            target,
            display_hint(explainer.name, evidence),
            thresholds=thresholds,
            timing_runs=timing_runs,
            seed=seed,
        )
        result = replace(result, elapsed_s=time.perf_counter() - started)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return Comparison(tuple(results), grading, thresholds, timing_runs)


def measure_view(
    explanation: Explanation,
    model: nn.Module,
    x: Tensor,
    explainer: Explainer,
    view: DisplayHint,
    *,
    checks: Sequence[str] = CHECKS,
    thresholds: Thresholds = Thresholds(),
    seed: int = 0,
    transforms: Sequence[Transform] = ("shift1",),
) -> tuple[Measurements, Any, Any]:
    """What ``checks`` need, measured on the map as shown (``view``), and the consistency and randomisation
    results they came from (None where not run). ``transforms`` must hold ``"shift1"``; more transforms
    serve the comparison's stability row.

    :func:`~saliscope.trust.measure` ranks pixels by the explanation it is given, so it is given the shown
    map for the map and deletion checks; stability and sanity re-run the method through :class:`ShownMaps`
    and compare its shown maps, signed as shown (``"absolute"`` would fold a signed view's "against" pixels
    onto its "for" pixels); completeness is the raw explanation's.
    """
    from ..metrics.robustness import consistency
    from ..metrics.sanity import model_randomisation, top_stages

    mine, viewer, bound = shown(explanation, view), ShownMaps(explainer, view), explanation.target
    found = measure(
        mine,
        model,
        x,
        checks=[c for c in checks if c in ("map", "deletion")] or ["map"],
        seed=seed,
        thresholds=thresholds,
    )
    if "completeness" in checks:
        path = measure(explanation, model, x, checks=("completeness",), thresholds=thresholds, seed=seed)
        found.completeness_gap = path.completeness_gap
        found.notes.update(path.notes)
    steady = sanity = None
    if "stability" in checks:
        # Both re-run the method only on altered inputs / models: the clean map is the one just made.
        steady = consistency(viewer, x, bound, transforms=tuple(transforms), evidence="signed", seed=seed, clean=mine)
        found.shift_rank_correlation = [float(v) for v in steady.spearman[list(transforms).index("shift1")]]
        found.add_cost(steady.cost)
    if "sanity" in checks:
        group = top_stages(explainer.model, thresholds.sanity_stages)
        sanity = model_randomisation(viewer, x, bound, stages=[group], seed=seed, clean=mine)
        # The viewer's maps are the one-channel shown map, so "signed" here is that map as shown.
        found.randomised_rank_correlation = [float(v) for v in sanity.spearman_signed[-1]]
        found.add_cost(sanity.cost)
    return found, steady, sanity


def check_view(
    explanation: Explanation,
    model: nn.Module,
    x: Tensor,
    explainer: Explainer,
    view: DisplayHint,
    *,
    checks: Sequence[str] = CHECKS,
    skipped: Mapping[str, str] | None = None,
    thresholds: Thresholds = Thresholds(),
    seed: int = 0,
) -> CheckReport:
    """:func:`~saliscope.trust.check` of the map as shown (``view``: what a figure draws), as the comparison
    judges it. ``skipped`` names checks reported as skipped, each with its reason, without measuring them."""
    skipped = dict(skipped or {})
    run = [c for c in checks if c not in skipped]
    found, _, _ = measure_view(explanation, model, x, explainer, view, checks=run, thresholds=thresholds, seed=seed)
    found.notes.update(skipped)
    return judge(found, checks=[c for c in CHECKS if c in checks], thresholds=thresholds)


def _measure_one(
    name: str,
    explainer: Explainer,
    model: nn.Module,
    x: Tensor,
    target: TargetLike,
    view: DisplayHint,
    *,
    thresholds: Thresholds,
    timing_runs: int,
    seed: int,
) -> MethodResult:
    from ..metrics.faithfulness import insertion
    from ..metrics.resolution import effective_resolution

    explanation = explainer.explain(x, target)
    seconds, timed = explanation.cost.seconds, 1
    if seconds < _TIME_ONCE_AFTER_S:
        seconds = min(explainer.explain(x, explanation.target).cost.seconds for _ in range(timing_runs))
        timed = timing_runs
    mine = shown(explanation, view)
    found, steady, _ = measure_view(
        explanation,
        model,
        x,
        explainer,
        view,
        checks=CHECKS,
        thresholds=thresholds,
        seed=seed,
        transforms=STABILITY_TRANSFORMS,
    )
    assert steady is not None and found.shift_rank_correlation and found.randomised_rank_correlation
    inserted = insertion(model, x, mine, explanation.target, steps=thresholds.deletion_steps, seed=seed)
    found.add_cost(inserted.cost)
    report = judge(found, thresholds=thresholds)
    assert found.deletion_auc is not None
    return MethodResult(
        name=name,
        explanation=explanation,
        view=view,
        seconds=float(seconds),
        timed_runs=timed,
        detail_px=float(effective_resolution(mine).detail_px[0]),
        stability=float(steady.spearman[:, 0].nan_to_num(nan=0.0).mean()),
        shift_rank_correlation=found.shift_rank_correlation[0],
        deletion_auc=found.deletion_auc[0],
        insertion_auc=float(comparable_auc(inserted)[0]),
        randomised_rank_correlation=found.randomised_rank_correlation[0],
        needs=requirement(explainer),
        report=report,
        metrics_cost=found.cost if found.cost is not None else Cost(0, 0, 0, 0.0, None),
    )
