"""saliscope's own model format: weights plus the architecture's name, the preprocessing and the labels, all as
plain data that ``torch.load(weights_only=True)`` reads without running any code from the file.

``save_model(model, path)`` writes it; ``load_model(path)`` rebuilds the architecture by name and loads the
weights strictly. Architectures it can name: saliscope's :class:`~saliscope.train.TinyCNN`, the default model,
``timm:NAME``, ``torchvision:NAME`` and Hugging Face image classifiers (their configuration is stored as JSON).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from saliscope.core.errors import ModelLoadError

from ._messages import describe
from .files import SAVED_FORMAT_KEY, classifier_key, load_strict
from .preprocess import Preprocess

FORMAT_VERSION = 1
_HF = "hf"
# saliscope's own architectures are named "saliscope.module:Class"; only modules under this package are imported.
_OWN = "saliscope."


def save_model(model: nn.Module, path: str | os.PathLike[str], *, arch: str | None = None) -> Path:
    """Write ``model`` to ``path`` in saliscope's format: a file that loads safely with ``load_model(path)``.

    Stored: the weights (``state_dict``), the architecture (``arch``, else found from the model: a TinyCNN, a
    Hugging Face classifier, what ``load_model`` built it from, or a timm model's own name), the model's
    ``.preprocess`` and ``.labels`` when it carries them, and its ``.name``. Everything is plain data, so the file
    is read with ``torch.load(weights_only=True)``: it cannot run code on the machine that loads it.

    ``arch``: ``"default"``, ``"timm:NAME"`` or ``"torchvision:NAME"`` for a model whose architecture cannot be
    found from the model itself. Returns the path written. Raises :class:`ModelLoadError` for a model whose
    architecture cannot be named (save it with ``torch.jit.script`` + ``torch.jit.save`` instead).
    """
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"save_model needs an nn.Module, got {type(model).__name__}", "pass the model itself")
    if isinstance(model, torch.jit.ScriptModule):
        raise ModelLoadError(
            "this is a TorchScript module, which is already a safe, self-contained file format",
            "save it with torch.jit.save(model, path); load_model(path) reads it",
        )
    name, args = _architecture(model, arch)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    record: dict[str, Any] = {
        SAVED_FORMAT_KEY: FORMAT_VERSION,
        "arch": name,
        "arch_args": args,
        "state_dict": state,
        "name": str(getattr(model, "name", "") or ""),
    }
    preprocess = getattr(model, "preprocess", None)
    if isinstance(preprocess, Preprocess):
        record["preprocess"] = dataclasses.asdict(preprocess)
    labels = getattr(model, "labels", None)
    if isinstance(labels, (list, tuple)) and all(isinstance(v, str) for v in labels):
        record["labels"] = list(labels)
    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(record, target)
    except OSError as exc:
        raise ModelLoadError(f"cannot write {target} ({describe(exc)})", "pass a path you can write to") from exc
    return target


def _architecture(model: nn.Module, arch: str | None) -> tuple[str, dict[str, Any]]:
    """(architecture name, the plain arguments needed to rebuild it)."""
    from .hf_zoo import is_hf_model

    if arch is not None:
        return _checked_arch(arch), {}
    own = getattr(model, "rebuild_args", None)  # saliscope's own models (TinyCNN) say how to rebuild them
    if callable(own) and type(model).__module__.startswith(_OWN):
        return f"{type(model).__module__}:{type(model).__qualname__}", dict(own())
    if is_hf_model(model):
        config: Any = model.config
        return _HF, {"config": config.to_json_string(use_diff=False), "class": type(model).__name__}
    built = getattr(model, "arch", None)  # what load_model built the model as
    if isinstance(built, str) and built:
        return built, {}
    cfg = getattr(model, "pretrained_cfg", None)
    timm_name = cfg.get("architecture") if isinstance(cfg, Mapping) else None
    if isinstance(timm_name, str) and timm_name:
        return f"timm:{timm_name}", {}
    raise ModelLoadError(
        f"cannot tell which architecture this {type(model).__name__} is, so it could not be rebuilt on loading",
        "pass arch='timm:NAME' or arch='torchvision:NAME', or save a TorchScript file"
        " (torch.jit.save(torch.jit.script(model), path)), which load_model reads as it is",
    )


def _checked_arch(arch: str) -> str:
    text = arch.strip()
    if text == "default" or text.startswith(("timm:", "torchvision:")):
        return text
    raise ModelLoadError(
        f"unknown architecture {arch!r} for save_model",
        "use arch='default', 'timm:NAME' or 'torchvision:NAME'",
    )


def is_saved_model(content: object) -> bool:
    return isinstance(content, Mapping) and SAVED_FORMAT_KEY in content


def from_saved(
    record: Mapping[str, Any], *, source: str
) -> tuple[nn.Module, Preprocess | None, tuple[str, ...] | None]:
    """Rebuild a model written by :func:`save_model`: (model, its preprocessing or None, its labels or None)."""
    version = record.get(SAVED_FORMAT_KEY)
    if version != FORMAT_VERSION:
        raise ModelLoadError(
            f"{source} was written by a newer saliscope (model format {version!r})",
            "upgrade saliscope: pip install -U saliscope",
        )
    state = record.get("state_dict")
    name = record.get("arch")
    if not isinstance(state, Mapping) or not isinstance(name, str):
        raise ModelLoadError(
            f"{source} is a damaged saliscope model file (no weights or architecture)", "save it again"
        )
    args = dict(record.get("arch_args") or {})
    model = _build(name, args, state, source)
    load_strict(model, state, source=source, arch=name)
    preprocess = record.get("preprocess")
    labels = record.get("labels")
    return (
        model,
        Preprocess(**preprocess) if isinstance(preprocess, Mapping) else None,
        tuple(str(v) for v in labels) if isinstance(labels, (list, tuple)) else None,
    )


def _build(name: str, args: dict[str, Any], state: Mapping[str, Any], source: str) -> nn.Module:
    from . import default as default_model
    from . import timm_zoo, torchvision_zoo

    if name.startswith(_OWN) and ":" in name:
        return _build_own(name, args, source)
    if name == _HF:
        return _build_hf(args, source)
    kind, _, rest = name.partition(":")
    if kind not in ("default", "timm", "torchvision"):
        raise ModelLoadError(f"{source} names an architecture saliscope does not know ({name!r})", "save it again")

    def build(n: int | None) -> nn.Module:
        if kind == "default":
            return default_model.build_architecture(n or 1000)
        zoo = timm_zoo if kind == "timm" else torchvision_zoo
        return zoo.build(rest, pretrained=False, num_classes=n)[0]

    model = build(None)
    key = classifier_key(model)
    if key is not None and key in state:
        wanted = int(state[key].shape[0])
        if wanted != int(model.state_dict()[key].shape[0]):
            model = build(wanted)  # a fine-tuned head
    return model


def _build_own(name: str, args: dict[str, Any], source: str) -> nn.Module:
    module_name, _, class_name = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(
            f"{source} holds a {class_name} that this saliscope does not have ({describe(exc)})",
            "load it with the saliscope version that saved it",
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, nn.Module) and callable(getattr(cls, "rebuild_args", None))):
        raise ModelLoadError(f"{source} names {name}, which is not a saliscope model", "save it again")
    return cls(**args)


def _build_hf(args: dict[str, Any], source: str) -> nn.Module:
    from .hf_zoo import _transformers

    transformers = _transformers()
    config_dict = json.loads(str(args["config"]))
    config = transformers.AutoConfig.for_model(**config_dict)
    if getattr(config, "auto_map", None):
        raise ModelLoadError(f"{source} holds a model that needs its own code (trust_remote_code)", "load it yourself")
    model_class = getattr(transformers, str(args.get("class", "")), None)
    if model_class is None or not isinstance(model_class, type) or not issubclass(model_class, nn.Module):
        return transformers.AutoModelForImageClassification.from_config(config)
    return model_class(config)
