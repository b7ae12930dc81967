"""``timm:NAME``: timm's model factory, its pretrained weights and its data config."""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from saliscope.core.errors import ModelLoadError

from ._messages import close_names, describe
from .download import (
    hf_cached_file,
    hf_endpoint,
    host_reachable,
    socket_timeout,
    torch_hub_checkpoint,
)
from .preprocess import Preprocess, as_interpolation

_HUB_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


def check_name(name: str) -> str:
    """``name`` if timm knows it (``resnet18``, ``resnet18.a1_in1k``, ``hf-hub:…``), else ModelLoadError."""
    import timm

    name = name.strip()
    if name.startswith(_HUB_PREFIXES) or timm.is_model(name):
        return name
    arch = name.split(".", 1)[0]
    close = close_names(arch, timm.list_models())
    raise ModelLoadError(
        f"timm has no model named {name!r}",
        (f"did you mean: {close}? " if close else "") + "timm.list_models('*pattern*') lists names",
    )


def preprocess_from_model(model: nn.Module) -> Preprocess:
    """Preprocess from ``timm.data.resolve_data_config`` (input size, crop_pct, interpolation, mean, std)."""
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=model)
    size = int(config["input_size"][-1])
    # timm's eval transform: resize the shorter side to floor(size / crop_pct), then centre-crop.
    resize = max(size, math.floor(size / float(config.get("crop_pct") or 0.875)))
    interpolation = as_interpolation(config.get("interpolation", "bicubic"), default="bicubic")
    return Preprocess(size, resize, interpolation, tuple(config["mean"]), tuple(config["std"]))


def _weights_source(name: str) -> tuple[dict[str, Any], str]:
    """(create_model kwargs that load cached weights offline, or {}; the URL a download would use)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    cfg_url = cfg.url if cfg is not None and isinstance(cfg.url, str) else None
    if cfg is None or not (cfg.hf_hub_id or cfg_url):
        raise ModelLoadError(
            f"timm has no pretrained weights for {name}",
            f"pass pretrained=False, or pick a name from timm.list_pretrained('{name.split('.')[0]}*')",
            f"pick a name from timm.list_pretrained('{name.split('.')[0]}*')",
        )
    if cfg.hf_hub_id:
        files = [f for f in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin") if f]
        cached = hf_cached_file(cfg.hf_hub_id, files)
        url = f"{hf_endpoint()}/{cfg.hf_hub_id.partition('@')[0]}/resolve/main/{files[0]}"
    else:
        cached = None
        url = str(cfg_url)
    if cached is None and cfg_url and torch_hub_checkpoint(cfg_url).is_file():
        cached = torch_hub_checkpoint(cfg_url)
    # Pointing timm at the cached file skips the hub's "is there a newer revision?" request, which
    # offline would retry with back-off for most of a minute before falling back to the cache.
    return ({"pretrained_cfg_overlay": {"file": str(cached)}} if cached else {}), url


def _offline_error(name: str, url: str, reason: str) -> ModelLoadError:
    filename = url.rsplit("/", 1)[-1] or "weights.pth"
    return ModelLoadError(
        f"weights for timm:{name} are not on this machine and could not be downloaded ({reason})",
        f"download {url} and pass the file: load_model('{filename}', arch='timm:{name}'), or pretrained=False",
        f"download {url} and pass the file: --model {filename} --arch timm:{name}",
    )


def build(
    name: str, *, pretrained: bool, num_classes: int | None = None
) -> tuple[nn.Module, Preprocess, tuple[str, ...] | None]:
    """Build ``timm:name``. Returns (model, preprocess, None: timm does not ship class names)."""
    import timm

    name = check_name(name)
    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    if not pretrained:
        try:
            model = timm.create_model(name, pretrained=False, **kwargs)
        except Exception as exc:  # hf-hub:/local-dir: names read a config; odd architectures need args
            raise ModelLoadError(
                f"cannot build timm:{name} ({describe(exc)})", "check the name with timm.list_models()"
            ) from exc
        return model, preprocess_from_model(model), None
    if name.startswith(_HUB_PREFIXES):
        overlay: dict[str, Any] = {}
        url = hf_endpoint()
    else:
        overlay, url = _weights_source(name)
    if not overlay:
        reachable, reason = host_reachable(url)
        if not reachable:
            raise _offline_error(name, url, reason)
    try:
        with socket_timeout():
            model = timm.create_model(name, pretrained=True, **overlay, **kwargs)
    except Exception as exc:  # hub errors, timeouts, corrupt cache: all end the same way
        if overlay:
            path = overlay["pretrained_cfg_overlay"]["file"]
            raise ModelLoadError(
                f"the cached weights for timm:{name} at {path} cannot be loaded ({describe(exc)})",
                f"delete {path} and try again, or pass pretrained=False",
                f"delete {path} and try again",
            ) from exc
        raise _offline_error(name, url, describe(exc)) from exc
    return model, preprocess_from_model(model), None
