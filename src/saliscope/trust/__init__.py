"""Judging explanations: flags that fire before a misleading map reaches a user, and the measured
method comparison. Built on :mod:`saliscope.metrics`; thresholds in :mod:`saliscope.trust.thresholds`."""

from .checks import CHECKS, CheckReport, Measurements, Verdict, check, judge, measure
from .comparison import Comparison, MethodResult, check_view, compare_methods, measure_view, requirement
from .evaluation import METRICS, evaluate, headline, metric_names
from .thresholds import Band, Grading, Thresholds

__all__ = [
    "CHECKS",
    "METRICS",
    "Band",
    "CheckReport",
    "Comparison",
    "Grading",
    "Measurements",
    "MethodResult",
    "Thresholds",
    "Verdict",
    "check",
    "check_view",
    "compare_methods",
    "evaluate",
    "headline",
    "judge",
    "measure",
    "measure_view",
    "metric_names",
    "requirement",
]
