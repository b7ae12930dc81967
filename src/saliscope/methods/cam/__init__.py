"""The class activation map family: one base class, each variant one overridden step."""

from .base import CAM, CamEvidence
from .gradient_weighted import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from .guided import GuidedGradCAM
from .score_weighted import AblationCAM, EigenCAM, ScoreCAM

__all__ = [
    "CAM",
    "AblationCAM",
    "CamEvidence",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedGradCAM",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "XGradCAM",
]
