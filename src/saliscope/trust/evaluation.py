"""Every metric of :mod:`saliscope.metrics` on one explanation, by name: what ``saliscope evaluate`` runs.

Each entry maps a metric name to a call with settings sized for a routine run (50-step curves, 5 noisy
copies for sensitivity); call the metric functions themselves for other settings. The headline number of
each result is its ``.value`` (per image) and whether higher is better its ``.higher_is_better``.

Metrics share what they can without changing a number: the explanation being judged is handed to the
metrics that would otherwise make it again (consistency, sanity), and max- and average-sensitivity, which
take the same seeded perturbations, are one measurement read two ways.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from ..core.cost import Cost
from ..core.errors import InputError
from ..core.explanation import Explanation
from ..methods.base import Explainer
from .thresholds import Thresholds

MetricCall = Callable[[nn.Module, Tensor, Explainer, Explanation, int], Any]


def _metrics() -> dict[str, MetricCall]:
    from .. import metrics as M

    # The flags' own settings, so check(..., known=results) can reuse these results instead of re-measuring.
    t = Thresholds()
    steps = t.deletion_steps

    return {
        "deletion": lambda m, x, ex, e, s: M.deletion(m, x, e, e.target, steps=steps, seed=s),
        "insertion": lambda m, x, ex, e, s: M.insertion(m, x, e, e.target, steps=steps, seed=s),
        "morf": lambda m, x, ex, e, s: M.pixel_flipping(m, x, e, e.target, order="morf", steps=steps, seed=s),
        "lerf": lambda m, x, ex, e, s: M.pixel_flipping(m, x, e, e.target, order="lerf", steps=steps, seed=s),
        "road": lambda m, x, ex, e, s: M.road(m, x, e, e.target, seed=s),
        "faithfulness-correlation": lambda m, x, ex, e, s: M.faithfulness_correlation(m, x, e, e.target, seed=s),
        "counterfactual": lambda m, x, ex, e, s: M.counterfactual_removal(m, x, e, e.target, seed=s),
        "max-sensitivity": lambda m, x, ex, e, s: M.max_sensitivity(ex, x, e.target, n_samples=5, seed=s),
        "avg-sensitivity": lambda m, x, ex, e, s: M.avg_sensitivity(ex, x, e.target, n_samples=5, seed=s),
        "consistency": lambda m, x, ex, e, s: M.consistency(ex, x, e.target, seed=s, clean=e),
        "sparseness": lambda m, x, ex, e, s: M.sparseness(e),
        "entropy": lambda m, x, ex, e, s: M.entropy(e),
        "resolution": lambda m, x, ex, e, s: M.effective_resolution(e),
        "sanity": lambda m, x, ex, e, s: M.model_randomisation(
            ex, x, e.target, stages=[M.top_stages(ex.model, t.sanity_stages)], seed=s, clean=e
        ),
        "random-logit": lambda m, x, ex, e, s: M.random_logit(ex, x, e.target, seed=s),
        "completeness": lambda m, x, ex, e, s: None if e.completeness_gap is None else M.completeness_gap(e),
    }


METRICS: tuple[str, ...] = (
    "deletion",
    "insertion",
    "morf",
    "lerf",
    "road",
    "faithfulness-correlation",
    "counterfactual",
    "max-sensitivity",
    "avg-sensitivity",
    "consistency",
    "sparseness",
    "entropy",
    "resolution",
    "sanity",
    "random-logit",
    "completeness",
)


def metric_names(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"deletion,insertion"`` or ``"all"`` → metric names, checked."""
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    if not parts:
        raise InputError("no metric given", f"use some of: {', '.join(METRICS)} (or all)")
    names: list[str] = []
    for part in parts:
        if part == "all":
            names.extend(n for n in METRICS if n not in names)
        elif part in METRICS:
            if part not in names:
                names.append(part)
        else:
            raise InputError(f"unknown metric {part!r}", f"use some of: {', '.join(METRICS)} (or all)")
    return tuple(names)


def evaluate(
    model: nn.Module,
    x: Tensor,
    explainer: Explainer,
    explanation: Explanation,
    *,
    metrics: Sequence[str] = METRICS,
    seed: int = 0,
) -> dict[str, Any]:
    """``{metric: result}`` for ``explanation`` (made by ``explainer`` on ``x``); metrics that do not apply
    (completeness of a non-path method) are left out."""
    calls = _metrics()
    out: dict[str, Any] = {}
    for name in metric_names(list(metrics)):
        shared = _read_again(name, out)
        result = shared if shared is not None else calls[name](model, x, explainer, explanation, seed)
        if result is not None:
            out[name] = result
    return out


def _read_again(name: str, done: dict[str, Any]) -> Any:
    """A result that is another one read a second way: average-sensitivity is the mean of the very distances
    max-sensitivity took (same seed, same perturbations), so it costs no pass of its own."""
    pair = {"avg-sensitivity": ("max-sensitivity", "average"), "max-sensitivity": ("avg-sensitivity", "max")}
    if name not in pair or pair[name][0] not in done:
        return None
    other, statistic = pair[name]
    first = done[other]
    value = first.distances.mean(dim=1) if statistic == "average" else first.distances.amax(dim=1)
    return replace(first, sensitivity=value, statistic=statistic, cost=Cost(0, 0, 0, 0.0, None))


def headline(result: Any) -> list[float]:
    """A result's per-image headline number as plain floats (NaN where undefined)."""
    return [float(v) for v in result.value.reshape(-1)]
