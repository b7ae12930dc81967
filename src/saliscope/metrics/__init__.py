"""Metrics that judge an explanation: plain functions, batched, seeded, each citing its paper.

Organised by the taxonomy of Hedström et al. (Quantus, 2023): faithfulness, robustness, localisation,
complexity, randomisation (sanity). Every metric takes ``(model, x, attribution, target)`` where it needs
the model — ``attribution`` is an :class:`~saliscope.Explanation` or a ``(B, 1|C, H, W)`` tensor — and
returns a small frozen dataclass with per-sample values and, where it ran the model, its ``cost``.
"""

from __future__ import annotations

from ._common import saliency_map
from .completeness import CompletenessGap, completeness_gap
from .complexity import Entropy, Sparseness, entropy, sparseness
from .faithfulness import (
    CounterfactualRemoval,
    FaithfulnessCorrelation,
    counterfactual_removal,
    deletion,
    faithfulness_correlation,
    insertion,
    pixel_flipping,
)
from .localisation import (
    EnergyPointingGame,
    PointingGame,
    TopKIoU,
    energy_pointing_game,
    pointing_game,
    top_k_iou,
)
from .resolution import Resolution, effective_resolution
from .results import Curve
from .road import Road, noisy_linear_imputation, road
from .robustness import (
    ConsistencyResult,
    SensitivityResult,
    avg_sensitivity,
    consistency,
    max_sensitivity,
)
from .sanity import (
    MapSimilarity,
    RandomisationResult,
    RandomLogitResult,
    Stage,
    model_randomisation,
    random_logit,
    randomisation_stages,
    randomised_copies,
    top_stages,
)
from .similarity import spearman, ssim, top_k_overlap

__all__ = [
    "CompletenessGap",
    "ConsistencyResult",
    "CounterfactualRemoval",
    "Curve",
    "EnergyPointingGame",
    "Entropy",
    "FaithfulnessCorrelation",
    "MapSimilarity",
    "PointingGame",
    "RandomLogitResult",
    "RandomisationResult",
    "Resolution",
    "Road",
    "SensitivityResult",
    "Sparseness",
    "Stage",
    "TopKIoU",
    "avg_sensitivity",
    "completeness_gap",
    "consistency",
    "counterfactual_removal",
    "deletion",
    "effective_resolution",
    "energy_pointing_game",
    "entropy",
    "faithfulness_correlation",
    "insertion",
    "max_sensitivity",
    "model_randomisation",
    "noisy_linear_imputation",
    "pixel_flipping",
    "pointing_game",
    "random_logit",
    "randomisation_stages",
    "randomised_copies",
    "road",
    "saliency_map",
    "sparseness",
    "spearman",
    "ssim",
    "top_k_iou",
    "top_k_overlap",
    "top_stages",
]
