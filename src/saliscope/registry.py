"""Every method by name: what the CLI offers and what the shared invariant tests run over.

A method registers a builder ``(model, MethodOptions) -> Explainer``; options a method does not use
are ignored, so one command line can ask for several methods at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .core.errors import MethodError
from .methods.base import Explainer, Precision
from .methods.gradient import Gradient, GradientXInput
from .methods.guided_backprop import GuidedBackprop
from .methods.integrated_gradients import IntegratedGradients
from .wrappers.smoothing import SmoothGrad


@dataclass(frozen=True)
class MethodOptions:
    """Options shared by the command line's methods."""

    seed: int | None = 0
    n_samples: int = 50
    sigma: float = 0.15
    n_steps: int = 32
    baseline: str | None = None  # None: black when the model carries its normalisation, else zero
    chunk_size: int | None = None
    precision: Precision = "auto"

    def common(self) -> dict[str, Any]:
        """Keyword arguments every explainer takes."""
        return {"chunk_size": self.chunk_size, "precision": self.precision}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str  # for figures
    summary: str
    build: Callable[[nn.Module, MethodOptions], Explainer]


def _baseline(model: nn.Module, options: MethodOptions) -> str:
    if options.baseline is not None:
        return options.baseline
    return "black" if getattr(getattr(model, "preprocess", None), "normalize", None) else "zero"


_METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in _METHODS:
        raise ValueError(f"method {spec.name!r} is registered twice")
    _METHODS[spec.name] = spec
    return spec


def available() -> list[str]:
    return list(_METHODS)


def get(name: str) -> MethodSpec:
    key = name.strip().lower().replace("_", "-")
    if key not in _METHODS:
        import difflib

        close = difflib.get_close_matches(key, list(_METHODS), n=2)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise MethodError(f"unknown method {name!r}", f"{hint}available: {', '.join(_METHODS)}")
    return _METHODS[key]


def create(name: str, model: nn.Module, options: MethodOptions | None = None) -> Explainer:
    """Build the explainer registered as ``name`` for ``model``."""
    return get(name).build(model, options or MethodOptions())


def _smooth(mode: str) -> Callable[[nn.Module, MethodOptions], Explainer]:
    def build(model: nn.Module, o: MethodOptions) -> Explainer:
        inner = Gradient(model, **o.common())
        return SmoothGrad(inner, n_samples=o.n_samples, sigma=o.sigma, mode=mode, seed=o.seed)  # type: ignore[arg-type]

    return build


register(MethodSpec("gradient", "Gradient", "vanilla gradient (Simonyan 2014)",
                    lambda m, o: Gradient(m, **o.common())))
register(MethodSpec("gradient-x-input", "Gradient × Input", "gradient times input (Shrikumar 2016)",
                    lambda m, o: GradientXInput(m, **o.common())))
register(MethodSpec("guided-backprop", "Guided Backprop", "guided backpropagation (Springenberg 2015)",
                    lambda m, o: GuidedBackprop(m, **o.common())))
register(MethodSpec("integrated-gradients", "Integrated Gradients", "Integrated Gradients (Sundararajan 2017)",
                    lambda m, o: IntegratedGradients(m, n_steps=o.n_steps, baseline=_baseline(m, o),
                                                     **o.common())))  # type: ignore[arg-type]
register(MethodSpec("smoothgrad", "SmoothGrad", "SmoothGrad over the gradient (Smilkov 2017)", _smooth("mean")))
register(MethodSpec("smoothgrad-squared", "SmoothGrad²", "SmoothGrad² over the gradient", _smooth("squared")))
register(MethodSpec("vargrad", "VarGrad", "variance of noisy gradients (Adebayo 2018)", _smooth("variance")))
