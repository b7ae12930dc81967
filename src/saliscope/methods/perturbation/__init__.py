"""Perturbation methods: forward passes only, on perturbed copies of the input, batched and seeded."""

from .base import PerturbationExplainer
from .drise import DRISE
from .occlusion import Occlusion
from .rise import RISE
from .surrogate import LIME, KernelSHAP

__all__ = ["DRISE", "LIME", "RISE", "KernelSHAP", "Occlusion", "PerturbationExplainer"]
