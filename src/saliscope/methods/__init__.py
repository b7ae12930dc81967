"""Attribution methods, one module per family."""

from .base import Attribution, Explainer
from .baselines import Baseline, Black, Blur, Given, UniformNoise, Zero
from .gradient import Gradient, GradientXInput
from .guided_backprop import GuidedBackprop
from .integrated_gradients import IntegratedGradients
from .quadrature import quadrature

__all__ = [
    "Attribution",
    "Baseline",
    "Black",
    "Blur",
    "Explainer",
    "Given",
    "Gradient",
    "GradientXInput",
    "GuidedBackprop",
    "IntegratedGradients",
    "UniformNoise",
    "Zero",
    "quadrature",
]

# perturbation methods
from .perturbation import DRISE, LIME, RISE, KernelSHAP, Occlusion

__all__ += ["DRISE", "LIME", "RISE", "KernelSHAP", "Occlusion"]
