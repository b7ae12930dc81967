"""Reading a model from a local file: TorchScript, saliscope's own format, a state dict, or (on request) a
whole pickled module.

Security: a whole module saved with ``torch.save(model)`` can only be read by unpickling, which runs code
stored in the file: a model file from the internet could run anything on the user's machine. Every file is
read with ``torch.load(weights_only=True)``, which cannot run code and reads state dicts, checkpoints of
plain data and saliscope's own format (:func:`~saliscope.models.saving.save_model`). A file that needs
more is unpickled only when the caller says it trusts it (``trust_pickle=True``, ``--trust-pickle``).
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from saliscope.core.errors import ModelLoadError

from ._messages import describe, mismatch, short_list

MODEL_FILE_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin", ".pkl")
# Wrappers that prefix every key: DataParallel/DDP ("module."), torch.compile ("_orig_mod.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# Keys under which training scripts and Lightning store the weights inside a checkpoint dict.
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net")


SAVED_FORMAT_KEY = "saliscope_model"  # marks a file written by saliscope.save_model


def read_model_file(path: Path, *, trust_pickle: bool = False) -> nn.Module | dict[str, Any]:
    """A module (TorchScript, or unpickled when ``trust_pickle``), a state dict ``{name: tensor}``, or the dict
    of a file saliscope's :func:`save_model` wrote, read on the CPU."""
    _check_path(path)
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path)
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():
                # torch's notices about TorchScript's future are for model authors, not for readers.
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # a damaged archive can fail in many ways
            raise _damaged(path, exc) from exc
    return _unwrap(_torch_load(path, trust_pickle), path)


def _check_path(path: Path) -> None:
    try:
        _check_path_exists(path)
    except OSError as exc:  # a name too long, a broken mount: the path itself is unusable
        raise ModelLoadError(f"cannot access {path} ({describe(exc)})", "check the path") from exc


def _check_path_exists(path: Path) -> None:
    if not path.exists():
        raise ModelLoadError(
            f"model file not found: {path}",
            "check the path, or name a model: default, torchvision:resnet50, timm:resnet18",
        )
    if path.is_dir():
        raise ModelLoadError(
            f"{path} is a directory, not a model file", "pass the .pt/.pth/.ckpt/.safetensors file inside it"
        )
    if path.stat().st_size == 0:
        raise ModelLoadError(f"model file {path} is empty (0 bytes)", "save or download it again")


def _damaged(path: Path, exc: BaseException) -> ModelLoadError:
    return ModelLoadError(
        f"{path} is not a readable PyTorch model file ({describe(exc)})",
        "save it again with torch.save(model.state_dict(), path) or torch.jit.save(scripted, path)",
    )


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold ``code/`` and ``constants.pkl``; ``torch.save`` zips hold neither."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise ModelLoadError(
            f"{path} is a safetensors file but the safetensors package is missing",
            "pip install safetensors",
        ) from exc
    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as exc:  # SafetensorError and friends
        raise _damaged(path, exc) from exc


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" not in str(exc) and "Weights only" not in str(exc):
            raise _damaged(path, exc) from exc
        refused = exc
    except Exception as exc:  # truncated zips, bad magic numbers, wrong formats
        raise _damaged(path, exc) from exc
    # The safe reader refused something that is not plain data (a pickled nn.Module, a training checkpoint's
    # Python objects). Unpickling it runs code from the file: only with the caller's consent.
    if not trust_pickle:
        raise _pickled(path, refused)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (AttributeError, ImportError) as exc:
        raise ModelLoadError(
            f"{path} holds a pickled model whose class cannot be found ({describe(exc)})",
            "import the module that defines the class before loading, or save model.state_dict() and pass --arch",
        ) from exc
    except Exception as exc:
        raise _damaged(path, exc if str(exc) else refused) from exc


def _pickled(path: Path, refused: Exception) -> ModelLoadError:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a torch.save archive at all (random bytes), or an older torch
        names = []
    if not names:  # nothing pickled to name: the file is simply not a model file
        return _damaged(path, refused)
    held = short_list(sorted(names), 3)
    return ModelLoadError(
        f"{path} holds pickled Python objects ({held}); saliscope does not unpickle them unless told to,"
        " because unpickling runs code stored in the file",
        "save the weights as a state dict and pass arch= (torch.save(model.state_dict(), path)), save a TorchScript"
        " file (torch.jit.save), or saliscope's own format (saliscope.save_model(model, path)); for a file you"
        " trust, pass trust_pickle=True",
        "save the weights as a state dict and pass --arch, a TorchScript file (torch.jit.save), or saliscope's own"
        " format (saliscope.save_model); for a file you trust, pass --trust-pickle",
    )


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def _unwrap(obj: Any, path: Path) -> nn.Module | dict[str, Any]:
    """Find the module, the state dict or saliscope's own record inside what ``torch.load`` returned."""
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, Mapping) and SAVED_FORMAT_KEY in obj:
        return dict(obj)
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _CHECKPOINT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                return inner
            if _is_state_dict(inner):
                return dict(inner)  # type: ignore[arg-type]
        keys = [str(k) for k in obj]
        raise ModelLoadError(
            f"{path} holds a dict with keys [{short_list(keys)}] but no model or state dict",
            "save torch.save(model.state_dict(), path), or put the weights under 'state_dict'",
        )
    raise ModelLoadError(
        f"{path} holds a {type(obj).__name__}, not a model or a state dict",
        "save torch.save(model.state_dict(), path) or torch.save(model, path)",
    )


def strip_wrapper_prefixes(state_dict: Mapping[str, Tensor], expected: set[str]) -> dict[str, Tensor]:
    """Drop prefixes that wrappers add (``module.``, ``_orig_mod.``, Lightning's ``model.``).

    A prefix is dropped only when every key has it, and a leading attribute name (Lightning's
    ``model.``/``net.``) only when dropping it makes the keys match ``expected``.
    """
    sd = dict(state_dict)
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                changed = True
    heads = {k.split(".", 1)[0] for k in sd}
    if len(heads) == 1 and not set(sd) & expected:
        stripped = {k.split(".", 1)[1]: v for k, v in sd.items() if "." in k}
        if len(set(stripped) & expected) > 0:
            return stripped
    return sd


def classifier_key(model: nn.Module) -> str | None:
    """State-dict key of the classifier's weight: timm's config names it, else the last ≥2-D weight."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("classifier") if isinstance(cfg, Mapping) else None
    if isinstance(name, (tuple, list)):
        name = name[0] if name else None
    keys = model.state_dict()
    if isinstance(name, str) and f"{name}.weight" in keys:
        return f"{name}.weight"
    last = None
    for key, tensor in keys.items():
        if key.endswith(".weight") and tensor.dim() >= 2:
            last = key
    return last


def load_strict(model: nn.Module, state_dict: Mapping[str, Tensor], *, source: str, arch: str) -> None:
    """``model.load_state_dict(strict=True)``, with a one-line error naming what does not fit."""
    target = model.state_dict()
    missing = [k for k in target if k not in state_dict]
    unexpected = [k for k in state_dict if k not in target]
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}"
        for k, v in state_dict.items()
        if k in target and tuple(v.shape) != tuple(target[k].shape)
    ]
    if missing or unexpected or wrong:
        raise ModelLoadError(
            f"the weights in {source} do not fit {arch} ({mismatch(wrong, missing, unexpected, limit=3)})",
            "pass the --arch the weights were trained with (e.g. timm:resnet18 or torchvision:resnet50)",
        )
    model.load_state_dict(state_dict, strict=True)
