"""Metrics that judge an explanation: plain functions, batched, seeded, each citing its paper.

Organised by the taxonomy of Hedström et al. (Quantus, 2023): faithfulness, robustness, localisation,
complexity, randomisation (sanity). Every metric takes ``(model, x, attribution, target)`` where it needs
the model — ``attribution`` is an :class:`~saliscope.Explanation` or a ``(B, 1|C, H, W)`` tensor — and
returns a small frozen dataclass with per-sample values and, where it ran the model, its ``cost``.
"""

from __future__ import annotations

from ._common import saliency_map

__all__ = ["saliency_map"]

# -- faithfulness, localisation, complexity, completeness (metrics helper A) ------------------------------
# (A: add your imports and __all__ entries between these two marker lines only)
from .completeness import CompletenessGap, completeness_gap  # noqa: E402
from .complexity import Entropy, Sparseness, entropy, sparseness  # noqa: E402
from .faithfulness import (  # noqa: E402
    CounterfactualRemoval, FaithfulnessCorrelation, counterfactual_removal, deletion, faithfulness_correlation,
    insertion, pixel_flipping,
)
from .localisation import (  # noqa: E402
    EnergyPointingGame, PointingGame, TopKIoU, energy_pointing_game, pointing_game, top_k_iou,
)
from .results import Curve  # noqa: E402
from .road import Road, noisy_linear_imputation, road  # noqa: E402

__all__ += [
    "CompletenessGap", "CounterfactualRemoval", "Curve", "EnergyPointingGame", "Entropy", "FaithfulnessCorrelation",
    "PointingGame", "Road", "Sparseness", "TopKIoU", "completeness_gap", "counterfactual_removal", "deletion",
    "energy_pointing_game", "entropy", "faithfulness_correlation", "insertion", "noisy_linear_imputation",
    "pixel_flipping", "pointing_game", "road", "sparseness", "top_k_iou",
]
# -- end A ---------------------------------------------------------------------------------------------

# -- robustness and sanity (metrics helper B) ----------------------------------------------------------
# (B: add your imports and __all__ entries between these two marker lines only)
from .robustness import (  # noqa: E402
    ConsistencyResult, SensitivityResult, avg_sensitivity, consistency, max_sensitivity,
)
from .sanity import (  # noqa: E402
    MapSimilarity, RandomisationResult, RandomLogitResult, Stage, model_randomisation, random_logit,
    randomisation_stages, randomised_copies, top_stages,
)
from .similarity import spearman, ssim, top_k_overlap  # noqa: E402

__all__ += [
    "ConsistencyResult", "MapSimilarity", "RandomLogitResult", "RandomisationResult", "SensitivityResult", "Stage",
    "avg_sensitivity", "consistency", "max_sensitivity", "model_randomisation", "random_logit",
    "randomisation_stages", "randomised_copies", "spearman", "ssim", "top_k_overlap", "top_stages",
]
# -- end B ---------------------------------------------------------------------------------------------

from .resolution import Resolution, effective_resolution  # noqa: E402

__all__ += ["Resolution", "effective_resolution"]
