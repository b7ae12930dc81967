"""Verdicts for ``saliscope demo`` and ``saliscope explain --check``: each map shown is judged by
:func:`saliscope.trust.check_view`, one line per method is printed, and ``index.html`` shows them all.

Every map gets the ``map``, ``deletion`` and ``completeness`` checks. ``stability`` and ``sanity`` re-run the
method (on a shifted image, on a model whose top is re-initialised): they are run too unless they would
take a method more than ~10 s over the whole run, estimated from its first explanation — then the verdict
says they were skipped, why, and the command that runs them. Decided once per method, so every image of a
run is judged on the same checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..core.explanation import Explanation
from ..methods.base import Explainer
from ..trust import CheckReport, check_view
from ..viz.display import DisplayHint
from ..viz.verdict_page import ImageSection, MapCard, verdict_page

ALWAYS: tuple[str, ...] = ("map", "deletion", "completeness")
RERUN: tuple[str, ...] = ("stability", "sanity")
RERUN_BUDGET_S = 10.0  # the most a method may spend on stability and sanity over a whole run


@dataclass
class Checker:
    """Runs the checks of one run; remembers, per method, which checks it gets."""

    model: nn.Module
    images: int  # in the run, for the time estimate
    seed: int = 0
    skipped: dict[str, dict[str, str]] = field(default_factory=dict)  # method -> {check: why}

    def report(
        self, name: str, explainer: Explainer, explanation: Explanation, x: Tensor, view: DisplayHint, rows: int
    ) -> list[CheckReport]:
        """One report per row of the batch ``x`` (the classes explained for one image)."""
        if name not in self.skipped:
            self.skipped[name] = self._plan(name, explanation, rows)
        # Completeness only where there is a gap to judge (path methods): elsewhere it is not a check at all.
        checks = [c for c in (*ALWAYS, *RERUN) if c != "completeness" or explanation.completeness_gap is not None]
        return [
            check_view(
                explanation[i],
                self.model,
                x[i : i + 1],
                explainer,
                view,
                checks=checks,
                skipped=self.skipped[name],
                seed=self.seed,
            )
            for i in range(rows)
        ]

    def _plan(self, name: str, explanation: Explanation, rows: int) -> dict[str, str]:
        # Stability explains one shifted image, sanity one image on a randomised copy: two explanations a row.
        estimate = 2 * explanation.cost.seconds * self.images
        if estimate <= RERUN_BUDGET_S:
            return {}
        images = f"{self.images} image{'s' if self.images != 1 else ''}"
        why = (
            f"skipped: re-running {name} for it would take ~{estimate:.0f} s over {images} (more than "
            f"{RERUN_BUDGET_S:g} s); `saliscope evaluate IMAGE --method {name}` measures it"
        )
        return dict.fromkeys(RERUN, why)


def verdict_line(title: str, report: CheckReport, width: int) -> str:
    """``Gradient   FAIL  stability: … ; passed: map, deletion, sanity`` — one line per method."""
    failed = [v for v in report.verdicts if v.status == "fail"]
    passed = [v.check for v in report.verdicts if v.status == "pass"]
    skipped = [v.check for v in report.verdicts if v.status == "skipped"]
    parts = [f"{v.check}: {v.reason}" for v in failed]
    if passed:
        parts.append("passed: " + ", ".join(passed))
    if skipped:
        parts.append("skipped: " + ", ".join(skipped))
    word = "FAIL" if failed else "pass"
    return f"    {title:<{width}}  {word}  " + "; ".join(parts)


def card(title: str, picture: Any, report: CheckReport, explanation: Explanation, signed: bool) -> MapCard:
    """The page's card for one map: the overlay, the verdicts and what the map cost."""
    facts = [f"explained in {explanation.cost.seconds:.2f} s"]
    if explanation.completeness_gap is not None and "evaluations" in explanation.extras:
        facts.append(f"{int(explanation.extras['evaluations'][0])} gradient evaluations")
    scale = "red: for the class, blue: against it" if signed else "brighter: more evidence"
    verdicts = [(v.check, v.status, v.reason) for v in report.verdicts]
    return MapCard(title, picture, verdicts, facts, scale)


def model_label(model: nn.Module) -> str:
    """How the page names the model: ``"the default model (EfficientNet-Lite0)"``, else its name."""
    name = str(getattr(model, "name", type(model).__name__))
    return "the default model (EfficientNet-Lite0)" if name == "default" else name


def write_page(out: Path, sections: Sequence[ImageSection], *, title: str, model: str) -> Path:
    """``OUT/index.html``: every image, its maps and their verdicts, self-contained."""
    from ..trust.thresholds import Thresholds
    from ..viz.files import atomic_write

    methods = list(dict.fromkeys(c.title for s in sections for c in s.cards))
    intro = [
        f"{len(sections)} image{'s' if len(sections) != 1 else ''}, explained by {', '.join(methods)} on {model}.",
        "Each map is judged before you look at it: a map that fails a check is marked, and the line says why. "
        "A map covers the part of the photo the model sees (the centre crop, outlined).",
    ]
    t = Thresholds()  # what the checks were judged by: the defaults, as in the Checker
    notes = [
        "map: the map is finite and not flat.",
        "deletion: removing the map's most important pixels first lowers the class score faster than removing "
        f"the same map moved to random places ({t.deletion_steps} steps, {t.deletion_random_maps} random "
        "placements; Petsiuk et al. 2018).",
        "stability: the map of the image shifted by 1 pixel keeps a rank correlation of at least "
        f"{t.min_shift_rank_correlation:g} with it.",
        "sanity: with the classifier, head and last block re-initialised the map changes (rank correlation at "
        f"most {t.max_randomised_rank_correlation:g}; Adebayo et al. 2018).",
        "completeness (Integrated Gradients): the attributions add up to the score change within "
        f"{t.max_completeness_gap:.0%} (Sundararajan et al. 2017).",
        "Thresholds: saliscope.trust.Thresholds; every number is in summary.json.",
    ]
    page = verdict_page(sections, title=title, intro=intro, notes=notes)
    path = out / "index.html"
    with atomic_write(path) as handle:
        handle.write(page.encode("utf-8"))
    return path
