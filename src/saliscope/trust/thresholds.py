"""The thresholds behind every flag and every colour of the comparison chart, in one place.

Each number is a documented default a user can change (``Thresholds(min_shift_rank_correlation=0.3)``);
the README's "Flags" table lists them with the measurements that motivated them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.errors import InputError
from ..core.validation import real, whole

Grade = Literal["good", "moderate", "poor", "n/a"]


@dataclass(frozen=True)
class Thresholds:
    """When a check fails.

    Attributes:
        flat_tolerance: a map whose value range is at most this share of its largest magnitude (or which is
            all zero) is flat: it shows nothing.
        deletion_steps: steps of the deletion curves the faithfulness check runs.
        deletion_random_maps: copies of the map rolled to seeded random places; their mean deletion AUC is
            "chance" (a uniform random map would not do: scattered removal wrecks any image faster).
        deletion_margin: the map's deletion AUC (normalised by the clean score) must be below chance by at
            least this much (Petsiuk et al. 2018: lower is better); 0.05 would ask for 5% of the clean score.
        min_shift_rank_correlation: the map of the image shifted by 1 px (mapped back) must keep at least
            this Spearman rank correlation with the original map.
        sanity_stages: how many stages of the cascade (:func:`saliscope.metrics.randomisation_stages`,
            output end first: classifier, head, last block, ...) the sanity check re-initialises together.
        max_randomised_rank_correlation: with those weights re-initialised, the map's Spearman rank
            correlation (absolute maps) with the original must be at most this (Adebayo et al. 2018: a map
            that survives randomising the top of the model does not explain the model). On the default model
            and the four sample photos, guided backprop keeps 0.97-0.99; Gradient 0.34-0.47, Grad-CAM
            -0.63-0.58, Integrated Gradients 0.37-0.63, occlusion -0.39-0.38 (seeds 0 and 1).
        max_completeness_gap: path methods: ``|sum(attr) - (f(x) - f(baseline))| / |f(x) - f(baseline)|``
            must be at most this (Sundararajan et al. 2017 recommend within 5%).
    """

    flat_tolerance: float = 1e-6
    deletion_steps: int = 50
    deletion_random_maps: int = 3
    deletion_margin: float = 0.0
    min_shift_rank_correlation: float = 0.5
    sanity_stages: int = 3
    max_randomised_rank_correlation: float = 0.8
    max_completeness_gap: float = 0.05

    def __post_init__(self) -> None:
        def example(name: str) -> str:
            return f"e.g. Thresholds({name}={getattr(Thresholds, name)})"

        for name in ("deletion_steps", "deletion_random_maps", "sanity_stages"):
            whole(f"Thresholds.{name}", getattr(self, name), example(name))
        for name, low, high in (
            ("flat_tolerance", 0.0, 1.0),
            ("deletion_margin", -1.0, 1.0),
            ("min_shift_rank_correlation", -1.0, 1.0),
            ("max_randomised_rank_correlation", -1.0, 1.0),
            ("max_completeness_gap", 0.0, None),
        ):
            real(f"Thresholds.{name}", getattr(self, name), example(name), at_least=low, at_most=high)


@dataclass(frozen=True)
class Band:
    """Cut-offs of one chart row: ``good`` up to ``good_until``, ``moderate`` up to ``moderate_until``,
    else ``poor`` — for rows where lower is better; reversed (at least) when ``higher_is_better``."""

    good_until: float
    moderate_until: float
    higher_is_better: bool = False

    def __post_init__(self) -> None:
        ordered = (
            self.good_until >= self.moderate_until if self.higher_is_better else self.good_until <= self.moderate_until
        )
        if not ordered:
            better = "higher" if self.higher_is_better else "lower"
            raise InputError(
                f"Band({self.good_until}, {self.moderate_until}): {better} is better, so 'good' must start "
                f"{'above' if self.higher_is_better else 'below'} 'moderate'",
                "swap the two cut-offs, or set higher_is_better",
            )

    def grade(self, value: float | None) -> Grade:
        if value is None or value != value:  # None or NaN
            return "n/a"
        if self.higher_is_better:
            return "good" if value >= self.good_until else "moderate" if value >= self.moderate_until else "poor"
        return "good" if value <= self.good_until else "moderate" if value <= self.moderate_until else "poor"

    def rule(self, unit: str = "") -> str:
        op, op2 = ("≥", "<") if self.higher_is_better else ("≤", ">")
        return (
            f"good {op} {self.good_until:g}{unit}, moderate {op} {self.moderate_until:g}{unit}, "
            f"poor {op2} {self.moderate_until:g}{unit}"
        )


@dataclass(frozen=True)
class Grading:
    """How the comparison chart colours its cells.

    Attributes:
        seconds: wall time of one explanation of one image.
        detail_px: the map's finest detail (``metrics.effective_resolution``), in input pixels.
        stability: mean Spearman rank correlation of the map with itself under a 1-px shift, a horizontal
            flip and 2% noise (``metrics.consistency``).
        faithfulness: insertion AUC minus deletion AUC (both normalised by the clean score): how much
            faster the score comes back when the map's top pixels are restored than it goes when they
            are removed. Random maps score 0 on average, but a smooth one spreads to about ±0.35 on one
            image (``bench/random_maps.py``), so one image's grade of a coarse map is weak evidence; the
            ``deletion`` check compares the map with itself moved to random places.
        sanity: Spearman rank correlation with the original map after the top stages are re-initialised.
    """

    seconds: Band = Band(1.0, 10.0)
    detail_px: Band = Band(4.0, 16.0)
    stability: Band = Band(0.8, 0.5, higher_is_better=True)
    faithfulness: Band = Band(0.3, 0.1, higher_is_better=True)
    sanity: Band = Band(0.5, 0.8)
