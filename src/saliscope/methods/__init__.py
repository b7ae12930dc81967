"""Attribution methods, one module per family."""

from .base import Attribution, Explainer
from .baselines import Baseline, Black, Blur, Given, UniformNoise, Zero
from .gradient import Gradient, GradientXInput
from .guided_backprop import GuidedBackprop
from .integrated_gradients import IntegratedGradients
from .quadrature import quadrature

__all__ = [
    "Attribution", "Explainer", "Baseline", "Black", "Blur", "Given", "UniformNoise", "Zero",
    "Gradient", "GradientXInput", "GuidedBackprop", "IntegratedGradients", "quadrature",
]

# perturbation methods (issue 4)
from .perturbation import LIME, RISE, KernelSHAP, Occlusion  # noqa: E402

__all__ += ["KernelSHAP", "LIME", "Occlusion", "RISE"]
