"""Flags: say, before a map reaches a user, whether it can be trusted — and why not.

``check(explanation, model, x)`` measures what each check needs with :mod:`saliscope.metrics` and returns
a :class:`CheckReport`: per check a :class:`Verdict` with the measured values, the threshold and a
one-line reason. Measuring and judging are separate steps (:func:`measure`, :func:`judge`), so the
comparison chart judges the numbers it has already measured instead of measuring twice.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..core.cost import Cost
from ..core.errors import InputError
from ..core.explanation import Explanation
from ..methods.base import Explainer
from .thresholds import Thresholds

CheckName = Literal["map", "deletion", "stability", "sanity", "completeness"]
CHECKS: tuple[str, ...] = ("map", "deletion", "stability", "sanity", "completeness")
Status = Literal["pass", "fail", "skipped"]


@dataclass(frozen=True)
class Verdict:
    """One check's outcome for a batch.

    ``values`` / ``failed`` hold one entry per image; ``status`` is ``"fail"`` when any image fails,
    ``"skipped"`` when the check does not apply (``reason`` says why).
    """

    check: str
    status: Status
    values: tuple[float | None, ...]
    threshold: float | None
    reason: str
    failed: tuple[bool, ...] = ()

    def line(self) -> str:
        return f"[{self.status}] {self.check}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status,
            "values": list(self.values),
            "threshold": self.threshold,
            "reason": self.reason,
            "failed": list(self.failed),
        }


@dataclass(frozen=True)
class CheckReport:
    """Every check's verdict for one explanation, and what measuring them cost."""

    method: str
    verdicts: tuple[Verdict, ...]
    cost: Cost | None = None

    @property
    def passed(self) -> bool:
        """True when no check failed (skipped checks do not count)."""
        return all(v.status != "fail" for v in self.verdicts)

    @property
    def failures(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.status == "fail")

    def __getitem__(self, check: str) -> Verdict:
        for v in self.verdicts:
            if v.check == check:
                return v
        raise KeyError(f"no check {check!r} in this report (it has {', '.join(v.check for v in self.verdicts)})")

    def lines(self) -> list[str]:
        return [v.line() for v in self.verdicts]

    def _repr_html_(self) -> str:
        """A notebook shows the report as a table of verdicts."""
        return report_html(self)

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "passed": self.passed,
            "verdicts": [v.as_dict() for v in self.verdicts],
            "cost": None if self.cost is None else self.cost.as_dict(),
        }


_MARKS = {"pass": ("✓", "#1b7837"), "fail": ("✗", "#b2182b"), "skipped": ("–", "#6b6b6b")}


def report_html(report: CheckReport) -> str:
    """The verdicts as an HTML table: check, verdict (mark, word and colour: readable without colour too), why."""
    e = html.escape
    failed = len(report.failures)
    summary = "every check passed" if failed == 0 else f"{failed} check{'s' * (failed != 1)} failed"
    skipped = sum(v.status == "skipped" for v in report.verdicts)
    if skipped:
        summary += f", {skipped} skipped"
    rows = []
    for v in report.verdicts:
        mark, colour = _MARKS.get(v.status, ("?", "#000"))
        rows.append(
            f'<tr class="{e(v.status)}"><td style="text-align:left">{e(v.check)}</td>'
            f'<td style="text-align:left;color:{colour};font-weight:600;white-space:nowrap">{mark} {e(v.status)}</td>'
            f'<td style="text-align:left">{e(v.reason)}</td></tr>'
        )
    cost = "" if report.cost is None else f"; measuring took {report.cost.seconds:.1f} s"
    return (
        '<table class="saliscope-checks">'
        f'<caption style="text-align:left"><b>{e(report.method)}</b>: {e(summary)}{e(cost)}</caption>'
        '<thead><tr><th style="text-align:left">check</th><th style="text-align:left">verdict</th>'
        f'<th style="text-align:left">why</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


@dataclass
class Measurements:
    """Per-image numbers the checks judge (``None`` where not measured). Filled by :func:`measure`."""

    method: str
    finite: list[bool]
    value_range: list[float]
    magnitude: list[float]
    deletion_auc: list[float] | None = None
    random_deletion_auc: list[float] | None = None
    shift_rank_correlation: list[float] | None = None
    randomised_rank_correlation: list[float] | None = None
    completeness_gap: list[float] | None = None
    deletion_space: str = "probability"
    notes: dict[str, str] = field(default_factory=dict)
    cost: Cost | None = None

    def add_cost(self, cost: Cost) -> None:
        self.cost = cost if self.cost is None else self.cost + cost


def _floats(t: Tensor) -> list[float]:
    return [float(v) for v in t.detach().double().cpu().reshape(-1)]


def comparable_auc(curve: Any) -> Tensor:
    """A curve's AUC on a scale shared by maps of the same image: divided by the clean score where that is a
    probability (positive by construction), the raw area for other scores (a logit, a box score)."""
    return curve.normalized_auc if curve.space == "probability" else curve.auc


def completeness_fix(explanation: Explanation | None) -> str:
    """What to do about a completeness gap too large, for the rule that made it."""
    params = explanation.params if explanation is not None else {}
    if params.get("rule") == "adaptive":
        return (
            f"the adaptive rule spent its budget of {params.get('max_evals')} gradient evaluations first; raise "
            "max_evals (--max-evals) or use a smoother baseline (blur)"
        )
    return (
        "integrate adaptively (omit n_steps / --n-steps: the default) or use more steps (n_steps, --n-steps), "
        "or a smoother baseline (blur)"
    )


def map_numbers(explanation: Explanation, method: str | None = None) -> Measurements:
    """What the ``map`` check needs: finiteness, value range and largest magnitude per image."""
    a = explanation.attributions.detach().double().flatten(1)
    finite = torch.isfinite(a).all(dim=1)
    clean = torch.where(torch.isfinite(a), a, torch.zeros_like(a))
    return Measurements(
        method=method or explanation.method,
        finite=[bool(v) for v in finite],
        value_range=_floats(clean.amax(1) - clean.amin(1)),
        magnitude=_floats(clean.abs().amax(1)),
    )


def shifted_maps(saliency: Tensor, n: int, seed: int) -> list[Tensor]:
    """``n`` copies of the map ``(B, 1, H, W)``, each rolled circularly by a seeded random offset: "chance".

    Chance must have the map's own texture. Pixel-removal metrics reward scattered removal (Rong et al.
    2022): a uniform random map deletes salt-and-pepper pixels, which wrecks any image faster than removing
    one compact region, so a smooth map (a CAM) would "lose" to noise. The same map moved elsewhere keeps
    its smoothness, size and compactness and changes only where it points.
    """
    _, _, h, w = saliency.shape
    g = torch.Generator().manual_seed(seed)
    offsets = torch.randint(1, h * w, (n,), generator=g).tolist()
    return [torch.roll(saliency, shifts=(o // w, o % w), dims=(2, 3)) for o in offsets]


def measure(
    explanation: Explanation,
    model: nn.Module,
    x: Tensor,
    *,
    explainer: Explainer | None = None,
    checks: Sequence[str] | str = CHECKS,
    thresholds: Thresholds = Thresholds(),
    seed: int = 0,
    known: Mapping[str, Any] | None = None,
) -> Measurements:
    """Measure what ``checks`` need. Stability and sanity re-run the method, so they need ``explainer``.

    ``known`` holds results already measured with the same settings, reused instead of measured again
    (what ``saliscope evaluate`` has after its metrics): ``"deletion"`` (a deletion :class:`Curve` with
    ``thresholds.deletion_steps`` steps), ``"consistency"`` (with a ``"shift1"`` transform) and
    ``"sanity"`` (a randomisation of the top ``thresholds.sanity_stages`` stages as one stage).
    """
    from ..metrics.faithfulness import deletion
    from ..metrics.robustness import consistency
    from ..metrics.sanity import model_randomisation, top_stages

    checks = _check_names(checks)
    known = known or {}
    found = map_numbers(explanation)
    if "deletion" in checks:
        steps, copies = thresholds.deletion_steps, thresholds.deletion_random_maps
        batch = len(explanation)
        curve = known.get("deletion")
        # A known curve is reused only when it is the one this check would draw: the same steps, and the space
        # deletion() scores in by default (probabilities for a class, the target's own score otherwise).
        reuse = curve is not None and curve.scores.shape[-1] == steps + 1 and curve.space != "logit"
        # The map's own curve (unless known) and its chance copies' curves in one batched call: one pass over
        # the clean images' set-up, every step of every curve in shared chunks.
        maps = ([] if reuse else [explanation.saliency()]) + shifted_maps(explanation.saliency(), copies, seed)
        rows = torch.arange(batch).repeat(len(maps))
        target = explanation.target.take(rows)
        curves = deletion(model, x[rows.to(x.device)], torch.cat(maps), target, steps=steps, seed=seed)
        found.add_cost(curves.cost)
        aucs = comparable_auc(curves).view(len(maps), batch)
        if reuse:
            found.deletion_auc = _floats(comparable_auc(curve))
        else:
            found.deletion_auc = _floats(aucs[0])
            aucs = aucs[1:]
        found.random_deletion_auc = _floats(aucs.mean(0))
        found.deletion_space = curves.space
    needs_explainer = [c for c in ("stability", "sanity") if c in checks]
    if needs_explainer and explainer is None:
        for c in needs_explainer:
            found.notes[c] = "needs the explainer: pass explainer= (the method object that made the map)"
    elif explainer is not None:
        if "stability" in checks:
            steady = known.get("consistency")
            if steady is None or "shift1" not in steady.transforms:
                steady = consistency(
                    explainer, x, explanation.target, transforms=("shift1",), seed=seed, clean=explanation
                )
                found.add_cost(steady.cost)
            found.shift_rank_correlation = _floats(steady.spearman[steady.transforms.index("shift1")])
        if "sanity" in checks:
            # One stage holding the top `sanity_stages` stages: the cascade's step that decides the flag.
            group = top_stages(explainer.model, thresholds.sanity_stages)
            sane = known.get("sanity")
            if sane is None or tuple(sane.stages) != (group.name,):
                sane = model_randomisation(
                    explainer, x, explanation.target, stages=[group], seed=seed, clean=explanation
                )
                found.add_cost(sane.cost)
            found.randomised_rank_correlation = _floats(sane.spearman_abs[-1])
    if "completeness" in checks:
        if explanation.completeness_gap is None:
            found.notes["completeness"] = f"{explanation.method} is not a path method: it has no completeness gap"
        else:
            from ..metrics.completeness import completeness_gap

            found.completeness_gap = _floats(completeness_gap(explanation).relative_gap)
            found.notes["completeness_fix"] = completeness_fix(explanation)
    return found


def judge(
    found: Measurements, *, checks: Sequence[str] | str = CHECKS, thresholds: Thresholds = Thresholds()
) -> CheckReport:
    """Turn measurements into verdicts (no model calls)."""
    checks = _check_names(checks)
    verdicts = []
    for name in checks:
        verdicts.append(_JUDGES[name](found, thresholds))
    return CheckReport(found.method, tuple(verdicts), found.cost)


def check(
    explanation: Explanation,
    model: nn.Module,
    x: Tensor,
    *,
    explainer: Explainer | None = None,
    checks: Sequence[str] | str = CHECKS,
    thresholds: Thresholds = Thresholds(),
    seed: int = 0,
    known: Mapping[str, Any] | None = None,
) -> CheckReport:
    """Judge an explanation: is the map usable, faithful, stable, sane, complete?

    Args:
        explanation: what ``explainer.explain(x, target)`` returned.
        model: the model it explains (left exactly as found; randomisation works on a copy).
        x: ``(B, C, H, W)`` the batch it explains.
        explainer: the method object; needed by ``stability`` and ``sanity``, which re-run it (skipped
            with a note without it).
        checks: any of ``"map"`` (finite, not flat), ``"deletion"`` (deletion AUC beats seeded random
            maps), ``"stability"`` (1-px shift), ``"sanity"`` (the top of the model randomised),
            ``"completeness"`` (path methods); one name or several.
        thresholds: when each check fails; see :class:`Thresholds`.
        seed: seeds the random maps, the randomised weights and the noise.
        known: results measured already, reused (see :func:`measure`).

    Returns:
        A :class:`CheckReport`; ``report.passed``, ``report.failures``, ``report.lines()``.
    """
    if not isinstance(explanation, Explanation):
        raise InputError(
            f"check needs an Explanation, got {type(explanation).__name__}",
            "pass what explainer.explain(x, target) returned",
        )
    found = measure(
        explanation, model, x, explainer=explainer, checks=checks, thresholds=thresholds, seed=seed, known=known
    )
    return judge(found, checks=checks, thresholds=thresholds)


def _check_names(checks: Sequence[str] | str) -> tuple[str, ...]:
    names = (checks,) if isinstance(checks, str) else tuple(checks)
    unknown = [c for c in names if c not in CHECKS]
    if unknown or not names:
        raise InputError(f"unknown or no checks: {unknown or 'none given'}", f"use some of: {', '.join(CHECKS)}")
    return names


def _which(failed: list[bool]) -> str:
    """ " in 2 of 3 images" for batches; empty for one image."""
    return "" if len(failed) == 1 else f" in {sum(failed)} of {len(failed)} images"


def worst_image(values: Sequence[float], failed: Sequence[bool], *, higher_is_better: bool) -> int:
    """The failing image farthest on the wrong side (a NaN, which fails, counts as farthest)."""
    bad = [i for i, f in enumerate(failed) if f]
    return min(bad, key=lambda i: (values[i] == values[i], values[i] if higher_is_better else -values[i]))


def best_image(values: Sequence[float], *, higher_is_better: bool) -> int:
    """The image whose value is best (the first on ties)."""
    return max(range(len(values)), key=lambda i: (values[i] if higher_is_better else -values[i], -i))


def _best_of(values: Sequence[float]) -> str:
    """ " in all 3 images (the best shown)" for batches; empty for one image."""
    return "" if len(values) == 1 else f" in all {len(values)} images (the best shown)"


def _verdict(
    check: str,
    values: list[float],
    failed: list[bool],
    threshold: float,
    bad: str,
    good: str,
    *,
    higher_is_better: bool,
) -> Verdict:
    """A verdict quoting the worst failing image when any fails, else the best image."""
    if any(failed):
        worst = values[worst_image(values, failed, higher_is_better=higher_is_better)]
        return Verdict(check, "fail", tuple(values), threshold, bad.format(v=worst) + _which(failed), tuple(failed))
    best = values[best_image(values, higher_is_better=higher_is_better)]
    return Verdict(check, "pass", tuple(values), threshold, good.format(v=best) + _best_of(values), tuple(failed))


def _judge_map(found: Measurements, t: Thresholds) -> Verdict:
    failed, reasons = [], []
    for fin, spread, top in zip(found.finite, found.value_range, found.magnitude, strict=True):
        if not fin:
            failed.append(True)
            reasons.append("map contains NaN or Inf")
        elif top == 0 or spread <= t.flat_tolerance * top:
            failed.append(True)
            reasons.append("map is flat: every pixel has the same value, it shows nothing")
        else:
            failed.append(False)
    values: tuple[float | None, ...] = tuple(
        (s / m if m > 0 else 0.0) if f else None
        for s, m, f in zip(found.value_range, found.magnitude, found.finite, strict=True)
    )
    if any(failed):
        return Verdict("map", "fail", values, t.flat_tolerance, reasons[0] + _which(failed), tuple(failed))
    return Verdict("map", "pass", values, t.flat_tolerance, "map is finite and varies", tuple(failed))


def _judge_deletion(found: Measurements, t: Thresholds) -> Verdict:
    if found.deletion_auc is None or found.random_deletion_auc is None:
        return Verdict("deletion", "skipped", (), t.deletion_margin, found.notes.get("deletion", "not measured"))
    aucs, chance = found.deletion_auc, found.random_deletion_auc
    # The value judged is the map's (normalised) deletion AUC minus chance's: below -margin passes.
    values = [a - c for a, c in zip(aucs, chance, strict=True)]
    failed = [not (v <= -t.deletion_margin) for v in values]  # NaN fails
    scale = "÷ clean score" if found.deletion_space == "probability" else f"{found.deletion_space} scores"
    if any(failed):
        i = worst_image(values, failed, higher_is_better=False)
        reason = (
            f"deletion AUC {aucs[i]:.3f} ({scale}) is no better than the same map moved to random "
            f"places: {chance[i]:.3f} (needs ≤ {chance[i] - t.deletion_margin:.3f})" + _which(failed)
        )
        return Verdict("deletion", "fail", tuple(values), -t.deletion_margin, reason, tuple(failed))
    i = best_image(values, higher_is_better=False)
    reason = (
        f"deletion AUC {aucs[i]:.3f} ({scale}) beats the same map moved to random places: "
        f"{chance[i]:.3f} by ≥ {t.deletion_margin:g}" + _best_of(values)
    )
    return Verdict("deletion", "pass", tuple(values), -t.deletion_margin, reason, tuple(failed))


def _judge_stability(found: Measurements, t: Thresholds) -> Verdict:
    values = found.shift_rank_correlation
    if values is None:
        return Verdict(
            "stability", "skipped", (), t.min_shift_rank_correlation, found.notes.get("stability", "not measured")
        )
    failed = [not (v >= t.min_shift_rank_correlation) for v in values]
    return _verdict(
        "stability",
        values,
        failed,
        t.min_shift_rank_correlation,
        f"unstable under 1-px shifts: rank correlation {{v:.2f}} < {t.min_shift_rank_correlation:g}",
        f"stable under 1-px shifts: rank correlation {{v:.2f}} ≥ {t.min_shift_rank_correlation:g}",
        higher_is_better=True,
    )


def _judge_sanity(found: Measurements, t: Thresholds) -> Verdict:
    values = found.randomised_rank_correlation
    if values is None:
        return Verdict(
            "sanity", "skipped", (), t.max_randomised_rank_correlation, found.notes.get("sanity", "not measured")
        )
    limit = t.max_randomised_rank_correlation
    failed = [not (v <= limit) for v in values]
    return _verdict(
        "sanity",
        values,
        failed,
        limit,
        f"map barely changes when the top of the model is randomised: rank correlation {{v:.2f}} > {limit:g}",
        f"map changes when the top of the model is randomised: rank correlation {{v:.2f}} ≤ {limit:g}",
        higher_is_better=False,
    )


def _judge_completeness(found: Measurements, t: Thresholds) -> Verdict:
    values = found.completeness_gap
    if values is None:
        return Verdict(
            "completeness", "skipped", (), t.max_completeness_gap, found.notes.get("completeness", "not measured")
        )
    failed = [not (v <= t.max_completeness_gap) for v in values]
    pct = t.max_completeness_gap * 100
    good = f"completeness gap {{v:.1%}} ≤ {pct:g}%"
    fix = found.notes.get("completeness_fix", completeness_fix(None))
    bad = f"completeness gap {{v:.1%}} > {pct:g}%: {fix}"
    return _verdict("completeness", values, failed, t.max_completeness_gap, bad, good, higher_is_better=False)


_JUDGES = {
    "map": _judge_map,
    "deletion": _judge_deletion,
    "stability": _judge_stability,
    "sanity": _judge_sanity,
    "completeness": _judge_completeness,
}
