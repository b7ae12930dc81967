"""Training helpers: a tiny CNN for the shortcut benchmark, and the right-for-the-right-reasons loss.

from saliscope.train import rrr_loss, train_tiny_cnn
model = train_tiny_cnn(data.train, rrr_weight=1000.0, irrelevant_mask=data.artefact_mask())
"""

from .rrr import DEFAULT_WEIGHT, RRRKind, RRRTerms, as_mask, rrr_loss, rrr_terms
from .tiny_cnn import TinyCNN, evaluate_accuracy, train_tiny_cnn

__all__ = [
    "DEFAULT_WEIGHT",
    "RRRKind",
    "RRRTerms",
    "TinyCNN",
    "as_mask",
    "evaluate_accuracy",
    "rrr_loss",
    "rrr_terms",
    "train_tiny_cnn",
]
