"""Models to explain: ``load_model()`` for the embedded default, torchvision, timm, Hugging Face and local files;
``save_model()`` for saliscope's own safe file format.

Every loaded model carries ``.preprocess`` (a :class:`Preprocess`), ``.labels`` and ``.name``.
"""

from .labels import imagenet_labels
from .loading import load_model
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .saving import save_model

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocess", "imagenet_labels", "load_model", "save_model"]
