"""Method-agnostic wrappers: take an explainer, return an explainer."""

from .smoothing import SmoothGrad

__all__ = ["SmoothGrad"]
