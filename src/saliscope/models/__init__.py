"""Models to explain: ``load_model()`` for the embedded default, torchvision, timm and local files.

Every loaded model carries ``.preprocess`` (a :class:`Preprocess`), ``.labels`` and ``.name``.
"""

from .labels import imagenet_labels
from .loading import load_model
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess", "imagenet_labels", "load_model"]
