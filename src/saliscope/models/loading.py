"""``load_model``: one entry point for the embedded default, torchvision, timm, Hugging Face and local files.

The model comes back unwrapped (its layer names stay the architecture's, e.g. ``blocks.6.0``) with plain
attributes attached: ``preprocess`` (:class:`Preprocess`), ``labels`` (class names), ``name`` (the spec it was
loaded from) and, when saliscope built the architecture by name, ``arch`` (``"timm:resnet18"``), which
:func:`~saliscope.models.saving.save_model` records.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Union

import torch
from torch import nn

from ..core.devices import check_device
from ..core.errors import ModelLoadError
from ..core.targets import class_scores
from . import default as default_model
from . import hf_zoo, timm_zoo, torchvision_zoo
from ._messages import describe
from .files import (
    MODEL_FILE_SUFFIXES,
    classifier_key,
    load_strict,
    read_model_file,
    strip_wrapper_prefixes,
)
from .labels import LabelsArg, resolve_labels
from .preprocess import Preprocess
from .saving import from_saved, is_saved_model
from .torchvision_zoo import IMAGENET_PREPROCESS

ModelSpec = Union[str, "os.PathLike[str]", None]
ACCEPTED_FORMS = (
    "'default', 'torchvision:NAME', 'timm:NAME', 'hf:ORG/NAME' or 'hf:FOLDER', or a path to a"
    " .pt/.pth/.ckpt/.safetensors file"
)

# Builds an architecture with random weights and the given number of outputs (None: its default).
Builder = Callable[[int | None], nn.Module]


def load_model(
    spec: ModelSpec = None,
    *,
    arch: str | None = None,
    pretrained: bool = True,
    labels: LabelsArg = None,
    device: str | torch.device = "cpu",
    trust_pickle: bool = False,
) -> nn.Module:
    """Load a model in eval mode on ``device`` with ``.preprocess``, ``.labels`` and ``.name`` attached.

    ``spec`` is ``None``/``"default"`` (EfficientNet-Lite0 with shipped weights), ``"torchvision:NAME"``,
    ``"timm:NAME"``, ``"hf:ORG/NAME"`` (a Hugging Face image classifier in the local cache) or ``"hf:FOLDER"``
    (a folder written by ``save_pretrained``), or a local file: TorchScript, saliscope's own format
    (:func:`~saliscope.save_model`), or a state dict, which needs ``arch`` ("default", "torchvision:NAME" or
    "timm:NAME"). A whole module saved with ``torch.save(model)`` is unpickled only with ``trust_pickle=True``:
    unpickling runs code stored in the file, so pass it only for files you trust. ``labels`` is a sequence of
    class names or a text file with one per line; by default the model's own, ImageNet names for 1000
    outputs, else ``class i``. The model maps ``(B, 3, size, size)`` preprocessed images to its class scores
    (a tensor, or a Hugging Face output whose ``logits`` saliscope reads).
    Raises :class:`ModelLoadError` for anything that cannot be loaded.
    """
    target_device = check_device(device, error=ModelLoadError)
    name = "default" if spec is None else os.fspath(spec)
    kind, rest = _parse(spec)
    if arch is not None and kind != "file":
        raise ModelLoadError(
            f"the architecture {arch!r} is only used with a local weights file, not with {name!r}",
            "drop arch=, or pass the weights file as the model",
            "drop --arch, or pass the weights file with --model",
        )
    known_labels: tuple[str, ...] | None = None
    num_classes: int | None = None
    built: str | None = None  # the architecture saliscope built by name
    if kind == "default":
        model = default_model.load_default(pretrained)
        preprocess, num_classes, built = default_model.DEFAULT_PREPROCESS, 1000, "default"
    elif kind == "torchvision":
        model, preprocess, known_labels = torchvision_zoo.build(rest, pretrained=pretrained)
        num_classes = len(known_labels) if known_labels else _classifier_outputs(model)
        built = f"torchvision:{torchvision_zoo.check_name(rest)}"
    elif kind == "timm":
        model, preprocess, known_labels = timm_zoo.build(rest, pretrained=pretrained)
        num_classes = int(getattr(model, "num_classes", 0)) or None
        built = f"timm:{rest.strip()}"
    elif kind == "hf":
        model, preprocess, known_labels = hf_zoo.build(rest, pretrained=pretrained)
        num_classes = int(getattr(model.config, "num_labels", 0)) or None
    else:
        model, preprocess, known_labels, built = _load_file(_expand(rest), arch, trust_pickle)
    model = _move(model.eval(), target_device)
    if num_classes is None and known_labels is not None:
        num_classes = _count_outputs(model, preprocess)  # a file's own labels count only if they fit its outputs
    if num_classes is None:
        num_classes = len(known_labels) if known_labels else _count_outputs(model, preprocess)
    if labels is None and known_labels is not None and len(known_labels) == num_classes:
        resolved = known_labels
    else:
        resolved = resolve_labels(labels, num_classes)
    # Plain attributes (not buffers or submodules): they do not change the model's state dict,
    # its named_modules() or its layer names.
    model.preprocess = preprocess  # type: ignore[assignment]
    model.labels = resolved  # type: ignore[assignment]
    model.name = name  # type: ignore[assignment]
    if built is not None:
        model.arch = built  # type: ignore[assignment]
    return model


def _parse(spec: ModelSpec) -> tuple[str, str]:
    """("default"|"torchvision"|"timm"|"file", the rest of the spec)."""
    if spec is None:
        return "default", ""
    if isinstance(spec, os.PathLike):
        return "file", os.fspath(spec)
    if not isinstance(spec, str):
        raise ModelLoadError(f"cannot load a model from a {type(spec).__name__}", f"pass {ACCEPTED_FORMS}")
    text = spec.strip()
    if not text:
        raise ModelLoadError("the model spec is empty", f"pass {ACCEPTED_FORMS}")
    if text.lower() == "default":
        return "default", ""
    for prefix in ("torchvision", "timm", "hf"):
        if text.lower().startswith(prefix + ":"):
            rest = text[len(prefix) + 1 :].strip()
            if not rest:
                raise ModelLoadError(f"{spec!r} names no model", f"write {prefix}:NAME, e.g. {prefix}:resnet18")
            return prefix, rest
    if _exists(text) or text.lower().endswith(MODEL_FILE_SUFFIXES) or "/" in text or os.sep in text:
        return "file", text
    raise ModelLoadError(f"unknown model {spec!r}", f"pass {ACCEPTED_FORMS}{_did_you_mean(text)}")


def _expand(text: str) -> Path:
    """``~/x.pt`` → home path; a ``~user`` that does not exist stays as written (reported as missing)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:
        return Path(text)


def _exists(text: str) -> bool:
    try:
        return _expand(text).exists()
    except (OSError, RuntimeError):  # a name too long for the OS; "~user" of an unknown user
        return False


def _did_you_mean(text: str) -> str:
    """A hint like `` (did you mean timm:resnet50 or torchvision:resnet50?)`` for a bare known name."""
    import timm
    import torchvision

    found = []
    if text.lower() in torchvision.models.list_models():
        found.append(f"torchvision:{text.lower()}")
    if timm.is_model(text):
        found.append(f"timm:{text}")
    return f" (did you mean {' or '.join(found)}?)" if found else ""


def _architecture(arch: str) -> tuple[Builder, Callable[[nn.Module], Preprocess], str]:
    """``arch`` ("default", "torchvision:NAME", "timm:NAME") → (builder, preprocess of a model, label)."""
    text = arch.strip() if isinstance(arch, str) else ""
    kind, _, rest = text.partition(":")
    kind = kind.lower() if rest.strip() or kind.lower() == "default" else ""
    rest = rest.strip()
    if kind == "default":
        return (
            lambda n: default_model.build_architecture(n or 1000),
            lambda _model: default_model.DEFAULT_PREPROCESS,
            "default (tf_efficientnet_lite0)",
        )
    if kind == "torchvision":
        tv_name = torchvision_zoo.check_name(rest)
        return (
            lambda n: torchvision_zoo.build(tv_name, pretrained=False, num_classes=n)[0],
            lambda _model: torchvision_zoo.preprocess_for(tv_name),
            f"torchvision:{tv_name}",
        )
    if kind == "timm":
        timm_name = timm_zoo.check_name(rest)
        return (
            lambda n: timm_zoo.build(timm_name, pretrained=False, num_classes=n)[0],
            timm_zoo.preprocess_from_model,
            f"timm:{timm_name}",
        )
    raise ModelLoadError(
        f"unknown architecture {arch!r}",
        "use arch='default', 'torchvision:NAME' or 'timm:NAME'" + _did_you_mean(text),
        "use --arch default, torchvision:NAME or timm:NAME" + _did_you_mean(text),
    )


def _load_file(
    path: Path, arch: str | None, trust_pickle: bool
) -> tuple[nn.Module, Preprocess, tuple[str, ...] | None, str | None]:
    """(model, preprocessing, the file's own labels or None, the architecture built by name or None)."""
    content = read_model_file(path, trust_pickle=trust_pickle)
    if isinstance(content, dict) and is_saved_model(content):
        model, own_preprocess, own_labels = from_saved(content, source=str(path))
        saved_arch = str(content["arch"])
        # Saved Hugging Face models and saliscope's own architectures are rebuilt from their record, not a name.
        named = None if saved_arch == "hf" or saved_arch.startswith("saliscope.") else saved_arch
        if arch is not None:
            build, preprocess_of, _label = _architecture(arch)
            return model, preprocess_of(build(None)), own_labels, named
        return model, own_preprocess or _preprocess_of_saved(saved_arch, model), own_labels, named
    model, preprocess, built = _load_module_or_weights(path, arch, content)
    return model, preprocess, _own_labels(model) if isinstance(content, nn.Module) else None, built


def _preprocess_of_saved(arch: str, model: nn.Module) -> Preprocess:
    """A saved model without a preprocessing: its architecture's, as load_model would have given it."""
    if arch == "default":
        return default_model.DEFAULT_PREPROCESS
    if arch.startswith("timm:"):
        return timm_zoo.preprocess_from_model(model)
    if arch.startswith("torchvision:"):
        return torchvision_zoo.preprocess_for(arch.partition(":")[2])
    return IMAGENET_PREPROCESS


def _load_module_or_weights(
    path: Path, arch: str | None, content: nn.Module | dict[str, torch.Tensor]
) -> tuple[nn.Module, Preprocess, str | None]:
    if isinstance(content, nn.Module):
        # arch only tells us the preprocessing here; the file fixes the architecture.
        if arch is None:
            # A module that carries its own Preprocess (saliscope's TinyCNN, a model load_model() returned
            # and torch.save() wrote) knows its input best: ImageNet's resize-256/crop-224 would cut off
            # the borders of a 64×64 image and feed it at the wrong size.
            own = getattr(content, "preprocess", None)
            return content, own if isinstance(own, Preprocess) else IMAGENET_PREPROCESS, None
        build, preprocess_of, _label = _architecture(arch)
        return content, preprocess_of(build(None)), None
    if arch is None:
        raise ModelLoadError(
            f"{path} holds only weights (a state dict); say which architecture they belong to",
            "pass arch=, e.g. load_model(path, arch='timm:resnet18')",
            "pass --arch, e.g. --arch timm:resnet18",
        )
    build, preprocess_of, arch_label = _architecture(arch)
    model = build(None)
    preprocess = preprocess_of(model)
    state_dict = content
    if arch_label.startswith("default") and default_model.is_lukemelas_state_dict(state_dict):
        # EfficientNet-PyTorch naming (like the shipped weights): rename first, fine-tuned heads included.
        model = build(state_dict["_fc.weight"].shape[0]) if "_fc.weight" in state_dict else model
        state_dict = default_model.convert_state_dict(
            state_dict, model, fix="pass the --arch the weights were trained with"
        )
    else:
        state_dict = strip_wrapper_prefixes(state_dict, set(model.state_dict()))
        key = classifier_key(model)
        if key is not None and key in state_dict:
            wanted = int(state_dict[key].shape[0])
            if wanted != model.state_dict()[key].shape[0]:
                model = build(wanted)  # a fine-tuned head: rebuild with its number of classes
    load_strict(model, state_dict, source=str(path), arch=arch_label)
    return model, preprocess, arch_label.split(" ")[0]


def _own_labels(model: nn.Module) -> tuple[str, ...] | None:
    """The class names a saved whole module carries as ``.labels`` (as load_model() and TinyCNN attach)."""
    own = getattr(model, "labels", None)
    if isinstance(own, (list, tuple)) and own and all(isinstance(v, str) for v in own):
        return tuple(own)
    return None


def _count_outputs(model: nn.Module, preprocess: Preprocess) -> int | None:
    """Number of classes: run one black image through the model; fall back to the classifier's shape.

    Used only for files (TorchScript, pickled modules) whose architecture we did not build ourselves.
    """
    try:
        with torch.no_grad():
            device = next(iter(model.parameters())).device
            out = model(torch.zeros(1, 3, preprocess.size, preprocess.size, device=device))
        return int(class_scores(out, 1)[0].shape[1])
    except Exception:  # a model we cannot probe still loads; labels stay generic
        pass
    return _classifier_outputs(model)


def _classifier_outputs(model: nn.Module) -> int | None:
    """Rows of the classifier's weight (the last weight of two or more dimensions)."""
    key = classifier_key(model)
    return int(model.state_dict()[key].shape[0]) if key else None


def _move(model: nn.Module, device: torch.device) -> nn.Module:
    try:
        return model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ModelLoadError(f"cannot move the model to {device} ({describe(exc)})", "use device cpu") from exc


__all__ = ["ACCEPTED_FORMS", "ModelSpec", "load_model"]
