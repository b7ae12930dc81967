"""``hf:ORG/NAME`` or ``hf:PATH``: a Hugging Face ``transformers`` image classifier, its image processor
mapped to :class:`Preprocess`, and its class names (``id2label``).

Nothing is downloaded here: a folder written by ``save_pretrained`` loads as it is, and a hub name loads
only from the local Hugging Face cache (``local_files_only=True``, so ``HF_HUB_OFFLINE`` or not, no request
leaves the machine). Fetching a checkpoint is the user's own step (``hf download ORG/NAME``). Code that a
checkpoint ships (``trust_remote_code``) is never run.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from saliscope.core.errors import ModelLoadError

from ._messages import describe, short_list
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Interpolation, Preprocess

INSTALL = 'install the Hugging Face extra: pip install "saliscope[hf]" (in a checkout: pip install -e ".[hf]")'
# PIL's resampling numbers, as image processors store them.
_RESAMPLE: dict[int, Interpolation] = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def is_hf_model(model: object) -> bool:
    """Whether ``model`` is a Hugging Face ``PreTrainedModel`` (without importing transformers)."""
    transformers = sys.modules.get("transformers")
    base = getattr(transformers, "PreTrainedModel", None) if transformers is not None else None
    return base is not None and isinstance(model, base)


def _transformers() -> Any:
    try:
        # Imported by name: transformers is an optional extra, and type-checking all of it is not our business.
        return importlib.import_module("transformers")
    except ImportError as exc:
        raise ModelLoadError("hf: models need the transformers package, which is not installed", INSTALL) from exc


def source(name: str) -> tuple[dict[str, Any], str]:
    """``(from_pretrained arguments, how to name it in messages)``: a local folder, or a hub name (``ORG/NAME`` or
    ``ORG/NAME@REVISION``) found in the cache."""
    text = name.strip()
    folder = _folder(text)
    if folder is not None:
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"{folder} is not a Hugging Face model folder (it has no config.json)",
                "pass a folder written by model.save_pretrained(), or a hub name, e.g. hf:google/vit-base-patch16-224",
            )
        return {"pretrained_model_name_or_path": str(folder), "local_files_only": True}, str(folder)
    repo, _, revision = text.partition("@")
    if not _cached(repo, revision or None):
        raise ModelLoadError(
            f"hf:{text} is not a local folder, and it is not in the Hugging Face cache"
            " (saliscope does not download from the hub)",
            f"fetch it once with `hf download {repo}` (or huggingface_hub.snapshot_download('{repo}')), or pass a"
            " folder written by save_pretrained(): load_model('hf:PATH')",
            f"fetch it once with `hf download {repo}`, or pass a folder written by save_pretrained(): --model hf:PATH",
        )
    found = {"pretrained_model_name_or_path": repo, "revision": revision or None, "local_files_only": True}
    return found, f"hf:{text}"


def _folder(text: str) -> Path | None:
    """The folder ``text`` names, or None for a hub name. A path-like name that is no folder is an error."""
    try:
        path = Path(text).expanduser()
        exists = path.exists()
    except (OSError, RuntimeError):
        path, exists = Path(text), False
    if exists and path.is_dir():
        return path
    pathlike = text.startswith((".", "/", "~")) or text.count("/") > 1 or (os.sep != "/" and os.sep in text)
    if pathlike or exists:
        what = "is a file, not a folder" if exists else "does not exist"
        raise ModelLoadError(
            f"hf:{text}: {path} {what}",
            "pass a folder written by model.save_pretrained(), or a hub name ORG/NAME that is in the cache",
        )
    return None


def _cached(repo: str, revision: str | None) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        found = try_to_load_from_cache(repo, "config.json", revision=revision)
    except Exception:  # an invalid repo id (characters the hub refuses) is simply not cached
        return False
    return isinstance(found, str) and os.path.isfile(found)


def _config(where: dict[str, Any], label: str) -> Any:
    transformers = _transformers()
    try:
        config = transformers.AutoConfig.from_pretrained(**where)
    except Exception as exc:  # an unknown model type, a damaged config.json
        raise ModelLoadError(
            f"cannot read the configuration of {label} ({describe(exc)})",
            "check that the folder was written by save_pretrained() with this transformers version",
        ) from exc
    if getattr(config, "auto_map", None):
        raise ModelLoadError(
            f"{label} needs its own Python code to run (trust_remote_code), which saliscope never enables",
            "load it yourself with transformers (trust_remote_code=True only for code you trust) and pass the module",
            "load it in Python with transformers (trust_remote_code=True only for code you trust) and pass the module",
        )
    mapping = transformers.models.auto.modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
    architectures = list(getattr(config, "architectures", None) or [])
    classifier = any("ImageClassification" in a for a in architectures) or not architectures
    if config.model_type not in mapping or not classifier:
        what = short_list(architectures) if architectures else f"a {config.model_type} model"
        raise ModelLoadError(
            f"{label} is not an image classifier ({what})",
            "pass an image-classification checkpoint (loadable with AutoModelForImageClassification),"
            " e.g. hf:google/vit-base-patch16-224",
        )
    return config


def _labels(config: Any) -> tuple[str, ...] | None:
    """``id2label`` in index order, unless it is transformers' placeholder (``LABEL_0``, ``LABEL_1``, ...)."""
    id2label = getattr(config, "id2label", None) or {}
    try:
        names = tuple(str(id2label[i]) for i in range(len(id2label)))
    except KeyError:
        return None
    if not names or all(n == f"LABEL_{i}" for i, n in enumerate(names)):
        return None
    return names


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else getattr(value, key, None)


def preprocess_from_processor(processor: Any, image_size: int | None = None) -> Preprocess:
    """The image processor's resize / crop / interpolation / mean / std as a :class:`Preprocess`.

    ``size={"height", "width"}`` squeezes the photo into that square (ViT, BEiT), then the optional centre crop
    (DeiT: 256 then 224); ``size={"shortest_edge"}`` resizes the shorter side, then crops to ``crop_size``
    (DINOv2, BiT) or, with ``crop_pct``, resizes to ``shortest_edge / crop_pct`` and crops ``shortest_edge``
    (ConvNeXt below 384 px; from 384 px on it squeezes into the square, as the processor does).
    """
    size, crop = getattr(processor, "size", None), getattr(processor, "crop_size", None)
    do_crop = bool(getattr(processor, "do_center_crop", False)) and crop is not None
    crop_side = _get(crop, "height") if do_crop else None
    height, width, shortest = _get(size, "height"), _get(size, "width"), _get(size, "shortest_edge")
    crop_pct = getattr(processor, "crop_pct", None)
    if not getattr(processor, "do_resize", True) or (height is None and shortest is None):
        side = int(crop_side or image_size or 224)
        kwargs: dict[str, Any] = {"size": side, "resize": side}
    elif height is not None:
        if width is not None and int(width) != int(height):
            raise ModelLoadError(
                f"the image processor resizes to {height}×{width}, and saliscope's inputs are square",
                "pass a square input size: load_model(...).preprocess = Preprocess(size=..., stretch=True)",
                "pass a square input size with --input-size",
            )
        side = int(crop_side or height)
        kwargs = {"size": side, "resize": max(side, int(height)), "stretch": True}
    elif crop_pct is not None and not do_crop:
        side = int(shortest)
        if side < 384:
            kwargs = {"size": side, "resize": max(side, int(side / float(crop_pct)))}
        else:
            kwargs = {"size": side, "resize": side, "stretch": True}
    else:
        side = int(crop_side or shortest)
        kwargs = {"size": side, "resize": max(side, int(shortest))}
    if getattr(processor, "do_normalize", True):
        mean = _triple(getattr(processor, "image_mean", None), IMAGENET_MEAN)
        std = _triple(getattr(processor, "image_std", None), IMAGENET_STD)
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    resample = getattr(processor, "resample", 2)
    interpolation = _RESAMPLE.get(int(getattr(resample, "value", resample) or 0), "bicubic")
    return Preprocess(interpolation=interpolation, mean=mean, std=std, **kwargs)


def _triple(values: Any, default: tuple[float, float, float]) -> tuple[float, float, float]:
    if values is None:
        return default
    if isinstance(values, (int, float)):
        return (float(values), float(values), float(values))
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def _preprocess(where: dict[str, Any], label: str, config: Any) -> Preprocess:
    transformers = _transformers()
    image_size = getattr(config, "image_size", None)
    image_size = int(image_size[0] if isinstance(image_size, (list, tuple)) else image_size or 224)
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(**where)
    except Exception:  # no preprocessor_config.json: the model's own input size, ImageNet statistics
        warnings.warn(
            f"{label} has no image processor (preprocessor_config.json): using {image_size} px with ImageNet's"
            " mean and std; set them with --input-size / --mean / --std if the model was trained otherwise",
            stacklevel=3,
        )
        resize = max(image_size, math.floor(image_size / 0.875))
        return Preprocess(size=image_size, resize=resize, interpolation="bilinear")
    return preprocess_from_processor(processor, image_size)


@contextmanager
def _quiet(transformers: Any) -> Iterator[None]:
    """No progress bars while loading: the command line prints one line per image, not transformers' bars."""
    logging: Any = getattr(getattr(transformers, "utils", None), "logging", None)
    enabled = bool(getattr(logging, "is_progress_bar_enabled", lambda: False)())
    if enabled:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            logging.enable_progress_bar()


def build(name: str, *, pretrained: bool) -> tuple[nn.Module, Preprocess, tuple[str, ...] | None]:
    """Build ``hf:name``. Returns (model in eval mode, its preprocessing, its class names or None)."""
    transformers = _transformers()
    with _quiet(transformers):
        return _build(transformers, name, pretrained=pretrained)


def _build(transformers: Any, name: str, *, pretrained: bool) -> tuple[nn.Module, Preprocess, tuple[str, ...] | None]:
    where, label = source(name)
    config = _config(where, label)
    auto = transformers.AutoModelForImageClassification
    if not pretrained:
        model = auto.from_config(config)
    else:
        try:
            model, info = auto.from_pretrained(**where, output_loading_info=True)
        except Exception as exc:  # no weights file, a truncated download, a version mismatch
            raise ModelLoadError(
                f"cannot load the weights of {label} ({describe(exc)})",
                "check that the folder holds model.safetensors (or pytorch_model.bin) written by save_pretrained()",
            ) from exc
        missing = list(info.get("missing_keys") or [])
        if missing:
            raise ModelLoadError(
                f"the weights of {label} do not fill the model (missing: {short_list(missing, 3)});"
                " its scores would be partly random",
                "pass the checkpoint of an image classifier, fine-tuned with its head",
            )
    return model.eval(), _preprocess(where, label, config), _labels(config)
