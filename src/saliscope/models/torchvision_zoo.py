"""``torchvision:NAME``: torchvision's model builders, their weights, preprocessing and class names."""

from __future__ import annotations

import inspect
import re
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from saliscope.core.errors import ModelLoadError

from ._messages import close_names, describe
from .download import socket_timeout, torch_hub_checkpoint
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, as_interpolation

# The ImageNet evaluation recipe torchvision documents for models without weights metadata.
IMAGENET_PREPROCESS = Preprocess(size=224, resize=256, interpolation="bilinear", mean=IMAGENET_MEAN, std=IMAGENET_STD)


def check_name(name: str) -> str:
    """The canonical (lower-case) torchvision model name, or ModelLoadError with suggestions."""
    import torchvision

    available = torchvision.models.list_models()
    canonical = name.strip().lower()
    if canonical not in available:
        close = close_names(canonical, available)
        raise ModelLoadError(
            f"torchvision has no model named {name!r}",
            (f"did you mean: {close}? " if close else "") + "torchvision.models.list_models() lists all names",
        )
    return canonical


def _weights(name: str) -> Any:
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError) as exc:
        raise ModelLoadError(
            f"torchvision has no pretrained weights for {name}",
            "pass pretrained=False",
            "pick another model, or pass a weights file with --model FILE --arch ARCH",
        ) from exc


def preprocess_from_weights(weights: Any) -> Preprocess:
    """Read resize / crop / interpolation / mean / std off ``weights.transforms()`` (no download)."""
    transform = weights.transforms()
    crop = getattr(transform, "crop_size", None)
    resize = getattr(transform, "resize_size", None)
    mean = getattr(transform, "mean", IMAGENET_MEAN)
    std = getattr(transform, "std", IMAGENET_STD)
    interpolation = as_interpolation(getattr(getattr(transform, "interpolation", None), "value", "bilinear"))
    if not crop:  # segmentation/video transforms have no crop: keep the ImageNet geometry
        return Preprocess(IMAGENET_PREPROCESS.size, IMAGENET_PREPROCESS.resize, interpolation, mean, std)
    size = int(crop[0])
    return Preprocess(size, max(size, int(resize[0]) if resize else size), interpolation, mean, std)


def _categories(name: str) -> tuple[str, ...] | None:
    """The class names of ``name``'s default weights (offline metadata), for a model built without them."""
    import torchvision

    try:
        categories = torchvision.models.get_model_weights(name).DEFAULT.meta.get("categories")
    except (ValueError, AttributeError, KeyError):
        return None
    return tuple(categories) if categories else None


def preprocess_for(name: str) -> Preprocess:
    """The preprocessing of ``name``'s default weights (their metadata is offline), else ImageNet's."""
    import torchvision

    try:
        found = preprocess_from_weights(torchvision.models.get_model_weights(name).DEFAULT)
    except (ValueError, AttributeError, KeyError):
        found = IMAGENET_PREPROCESS
    return for_detector(found) if name in torchvision.models.list_models(torchvision.models.detection) else found


def for_detector(preprocess: Preprocess) -> Preprocess:
    """torchvision's detectors take pixels in [0, 1] and normalise inside (``model.transform``): their model
    space is the pixels themselves."""
    return replace(preprocess, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _fetch(name: str, weights: Any) -> None:
    """Make sure ``weights``' file is in the torch hub cache: download it once, quickly failing."""
    url = str(weights.url)
    target = torch_hub_checkpoint(url)
    if target.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # torchvision file names end in the first hex digits of the file's sha256; checking them
    # turns a half-written download into an error here instead of garbage later.
    match = re.search(r"-([a-f0-9]*)\.", target.name)
    try:
        with socket_timeout():
            torch.hub.download_url_to_file(
                url, str(target), hash_prefix=match.group(1) if match else None, progress=True
            )
    except Exception as exc:  # URLError, timeouts, hash mismatch, disk full: same advice
        raise ModelLoadError(
            f"weights for torchvision:{name} are not on this machine and could not be downloaded ({describe(exc)})",
            f"download {url} to {target}, or pass a local file:"
            f" load_model('path.pth', arch='torchvision:{name}'), or pretrained=False",
            f"download {url} to {target}, or pass a local file: --model path.pth --arch torchvision:{name}",
        ) from exc


def build(
    name: str, *, pretrained: bool, num_classes: int | None = None
) -> tuple[nn.Module, Preprocess, tuple[str, ...] | None]:
    """Build ``torchvision:name``. Returns (model, preprocess, class names from the weights or None)."""
    import torchvision

    name = check_name(name)
    if not pretrained:
        kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
        # Detection/segmentation builders fetch an ImageNet backbone unless told not to.
        if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(name)).parameters:
            kwargs["weights_backbone"] = None
        try:
            model = torchvision.models.get_model(name, weights=None, **kwargs)
        except Exception as exc:  # an architecture that needs arguments we cannot guess
            raise ModelLoadError(
                f"cannot build torchvision:{name} ({describe(exc)})",
                "pick an image classifier from torchvision.models.list_models(torchvision.models)",
            ) from exc
        return model, preprocess_for(name), _categories(name) if num_classes is None else None
    weights = _weights(name)
    _fetch(name, weights)
    try:
        model = torchvision.models.get_model(name, weights=weights)
    except Exception as exc:  # the cached file exists, so it is damaged
        path = torch_hub_checkpoint(str(weights.url))
        raise ModelLoadError(
            f"the cached weights for torchvision:{name} at {path} cannot be loaded ({describe(exc)})",
            f"delete {path} and try again",
        ) from exc
    categories = weights.meta.get("categories")
    return model, preprocess_for(name), tuple(categories) if categories else None
