"""saliscope: why did a PyTorch vision model decide that? Explain, show, judge.

import saliscope as ss
model = ss.load_model()
x = model.preprocess(ss.load_image("cat.jpg"))
e = ss.IntegratedGradients(model, n_steps=32).explain(x, target=281)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import metrics
from .core.allocator import keep_freed_memory
from .core.cost import Cost
from .core.errors import SaliscopeError
from .core.explanation import Explanation
from .core.output_targets import BoxTarget, DetectionTarget, EmbeddingTarget, OutputTarget, SegmentationTarget
from .core.targets import BoundClasses, BoundTarget, ClassTarget, PredictedClass, Target, top_k_targets
from .methods import (
    DRISE,
    LIME,
    RISE,
    Explainer,
    Gradient,
    GradientXInput,
    GuidedBackprop,
    IntegratedGradients,
    KernelSHAP,
    Occlusion,
)
from .methods.cam import (
    CAM,
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    GuidedGradCAM,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from .methods.layers import candidate_layers
from .methods.transformer import AttentionRollout, GradientRollout
from .trust import Thresholds, check
from .wrappers import SmoothGrad

if TYPE_CHECKING:
    from .io import load_image, sample_images
    from .models import load_model, save_model

__version__ = "0.1.0"

# Model loading and image I/O pull in timm, skimage and PIL; load them on first use so that
# `import saliscope` stays light for users who bring their own model and tensors.
_LAZY = {
    "load_model": ("saliscope.models", "load_model"),
    "save_model": ("saliscope.models", "save_model"),
    "load_image": ("saliscope.io", "load_image"),
    "sample_images": ("saliscope.io", "sample_images"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'saliscope' has no attribute {name!r}")


__all__ = [
    "CAM",
    "DRISE",
    "LIME",
    "RISE",
    "AblationCAM",
    "AttentionRollout",
    "BoundClasses",
    "BoundTarget",
    "BoxTarget",
    "ClassTarget",
    "Cost",
    "DetectionTarget",
    "EigenCAM",
    "EmbeddingTarget",
    "Explainer",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "Gradient",
    "GradientRollout",
    "GradientXInput",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "IntegratedGradients",
    "KernelSHAP",
    "LayerCAM",
    "Occlusion",
    "OutputTarget",
    "PredictedClass",
    "SaliscopeError",
    "ScoreCAM",
    "SegmentationTarget",
    "SmoothGrad",
    "Target",
    "Thresholds",
    "XGradCAM",
    "candidate_layers",
    "check",
    "keep_freed_memory",
    "load_image",
    "load_model",
    "metrics",
    "sample_images",
    "save_model",
    "top_k_targets",
]
