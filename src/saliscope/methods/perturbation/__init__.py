"""Perturbation methods: forward passes only, on perturbed copies of the input, batched and seeded."""

from .base import PerturbationExplainer
from .occlusion import Occlusion
from .rise import RISE
from .surrogate import LIME, KernelSHAP

__all__ = ["LIME", "RISE", "KernelSHAP", "Occlusion", "PerturbationExplainer"]
