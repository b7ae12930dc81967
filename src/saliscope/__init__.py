"""saliscope: why did a PyTorch vision model decide that? Explain, show, judge.

    import saliscope as ss
    model = ss.load_model()
    x = model.preprocess(ss.load_image("cat.jpg"))
    e = ss.IntegratedGradients(model, n_steps=32).explain(x, target=281)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.cost import Cost
from .core.errors import SaliscopeError
from .core.explanation import Explanation
from .core.targets import BoundClasses, BoundTarget, ClassTarget, PredictedClass, Target, top_k_targets
from .methods import Explainer, Gradient, GradientXInput, GuidedBackprop, IntegratedGradients
from .wrappers import SmoothGrad

if TYPE_CHECKING:
    from .io import load_image, sample_images
    from .models import load_model

__version__ = "0.1.0"

# Model loading and image I/O pull in timm, skimage and PIL; load them on first use so that
# `import saliscope` stays light for users who bring their own model and tensors.
_LAZY = {
    "load_model": ("saliscope.models", "load_model"),
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
    "BoundClasses", "BoundTarget", "ClassTarget", "Cost", "Explainer", "Explanation", "Gradient",
    "GradientXInput", "GuidedBackprop", "IntegratedGradients", "PredictedClass", "SaliscopeError",
    "SmoothGrad", "Target", "load_image", "load_model", "sample_images", "top_k_targets",
]

# perturbation methods (issue 4)
from .methods import LIME, RISE, KernelSHAP, Occlusion  # noqa: E402

__all__ += ["KernelSHAP", "LIME", "Occlusion", "RISE"]

# the CAM family, transformer methods and targets beyond one class (issue 3)
from .core.output_targets import BoxTarget, EmbeddingTarget, OutputTarget, SegmentationTarget  # noqa: E402
from .methods.cam import (  # noqa: E402
    CAM, AblationCAM, EigenCAM, GradCAM, GradCAMPlusPlus, GuidedGradCAM, HiResCAM, LayerCAM, ScoreCAM, XGradCAM,
)
from .methods.layers import candidate_layers  # noqa: E402
from .methods.transformer import AttentionRollout, GradientRollout  # noqa: E402

__all__ += [
    "AblationCAM", "AttentionRollout", "BoxTarget", "CAM", "EigenCAM", "EmbeddingTarget", "GradCAM",
    "GradCAMPlusPlus", "GradientRollout", "GuidedGradCAM", "HiResCAM", "LayerCAM", "OutputTarget", "ScoreCAM",
    "SegmentationTarget", "XGradCAM", "candidate_layers",
]

# judging explanations (issue 5): saliscope.check(...); the metrics live in saliscope.metrics
from . import metrics  # noqa: E402
from .trust import Thresholds, check  # noqa: E402

__all__ += ["Thresholds", "check", "metrics"]
