"""Which layer a CAM reads, and how its output becomes a spatial grid.

A CAM needs a layer whose output has a spatial layout: ``(N, C, h, w)`` for a CNN, ``(N, h, w, C)`` for
timm's Swin stages, or ``(N, T, D)`` tokens for a Vision Transformer, where ``T = prefix + h * w`` (class,
distillation or register tokens first). Nothing is hard-coded: one probe forward of a single sample
records every module's output, and the grid of a token sequence follows from the token count, the input
size and the model's patch size.

Automatic choice (``layer=None``): the last module, in execution order, whose output is a spatial map
that the score depends on at more than one position, and that varies from position to position; the
outermost module when several return the same tensor. One probe forward and backward of a single sample
(the top class's score) tells which layers qualify:

- CNNs: ``layer4`` of a ResNet, ``bn2`` of timm's EfficientNet, ``features`` of torchvision's VGG /
  MobileNet. Pooling layers are skipped (VGG's 7×7 adaptive pool would tie the map's size to the input's),
  and so is anything after global pooling.
- Transformers that classify from a class token: the first norm of the last block (``blocks.11.norm1``).
  After it, the patch tokens no longer reach the class token, so their gradient is zero; the same rule
  passes over the branch norms of multi-branch ViTs (CrossViT, CoaT) and the token-wise auxiliary head of
  VOLO. Token-wise linear maps (``qkv``, ``fc1``, a token-wise classifier) are not candidates.
- Transformers and MLP models that average their tokens: the final norm (the CAM of the pooled features).

Models whose output holds no class scores (segmentation, detection, embeddings) get the last spatial
layer by structure alone: the first norm of the last block for token models, else the last map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from ..core.errors import MethodError, ModelOutputError
from ..core.model_state import explaining, hooks
from ..core.targets import class_scores

Layout = Literal["nchw", "nhwc", "tokens"]
_MAX_PREFIX_TOKENS = 16  # class + distillation + up to 14 register tokens
_NORMS = (nn.LayerNorm, nn.GroupNorm)
_POOLS = (
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.AvgPool2d,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveMaxPool1d,
    nn.AvgPool1d,
    nn.MaxPool1d,
)
# Activations whose spread across positions is below this share of their size carry no spatial information
# (a broadcast of pooled features).
_CONSTANT = 1e-6


@dataclass(frozen=True)
class LayerGrid:
    """A resolved layer: its name in the model, the layout of its output and its spatial grid."""

    name: str
    layout: Layout
    grid: tuple[int, int]
    prefix_tokens: int = 0

    def to_maps(self, activation: Tensor) -> Tensor:
        """The layer's output as ``(N, C, h, w)`` maps (prefix tokens dropped)."""
        h, w = self.grid
        if self.layout == "nchw":
            return activation
        if self.layout == "nhwc":
            return activation.permute(0, 3, 1, 2)
        tokens = activation[:, self.prefix_tokens :, :]
        return tokens.transpose(1, 2).reshape(activation.shape[0], activation.shape[2], h, w)


@dataclass(frozen=True)
class _Call:
    order: int
    name: str
    module: nn.Module
    shape: tuple[int, ...] | str  # a description for outputs that are not tensors
    grid: LayerGrid | None
    # From the gradient probe (None without one): the score depends on two or more of the layer's positions,
    # and its activations differ between positions.
    usable: bool | None = None


def resolve_layer(model: nn.Module, x: Tensor, layer: str | nn.Module | None) -> LayerGrid:
    """Find the layer a CAM reads for inputs shaped like ``x`` ``(B, C, H, W)``.

    ``layer`` is a module name as in ``model.named_modules()`` (``"layer4.2"``), the module itself, or
    None to choose automatically. Raises :class:`MethodError` naming the candidate layers when the name is
    unknown or the layer has no spatial output.
    """
    names = {id(m): n for n, m in model.named_modules() if n}
    if isinstance(layer, nn.Module):
        if id(layer) not in names:
            raise MethodError(
                f"the layer given ({type(layer).__name__}) is not a submodule of this model",
                "pass one of the model's own modules, or its name (e.g. layer='layer4')",
            )
        layer = names[id(layer)]
    calls = _probe(model, x[:1], patch=_patch_size(model), gradients=layer is None)
    spatial = [c for c in calls if c.grid is not None]
    if layer is None:
        choice = _automatic(spatial)
        if choice is None and any(_one_by_one(c.shape) for c in calls):
            raise MethodError(
                f"no layer of {type(model).__name__} keeps a spatial grid at this input size "
                f"({x.shape[-2]}×{x.shape[-1]}): its deepest maps are 1×1, and a CAM over them is one number for "
                "the whole image",
                "feed a larger image (the size the model was trained on), or use a gradient method",
            )
        if choice is None:
            raise MethodError(
                f"found no layer with a spatial output in {type(model).__name__}",
                "CAMs need a convolutional or Vision Transformer layer; use a gradient method instead",
            )
        return choice
    known = dict(model.named_modules())
    if layer not in known or not layer:
        raise MethodError(f"no layer named {layer!r} in {type(model).__name__}", _candidates(spatial))
    mine = [c for c in calls if c.name == layer]
    if not mine:
        raise MethodError(f"layer {layer!r} is never called in the model's forward pass", _candidates(spatial))
    last = mine[-1]  # a module used several times: its last call is the one nearest the output
    if last.grid is None and _one_by_one(last.shape):
        raise MethodError(
            f"layer {layer!r} outputs shape {last.shape}, a 1×1 grid at this input size ({x.shape[-2]}×"
            f"{x.shape[-1]}): a CAM over it is one number spread over the whole image, a flat map",
            _candidates(spatial) + ", or feed a larger image",
        )
    if last.grid is None:
        what = f"shape {last.shape}" if isinstance(last.shape, tuple) else last.shape
        raise MethodError(f"layer {layer!r} outputs {what}, not a spatial map", _candidates(spatial))
    return last.grid


def candidate_layers(model: nn.Module, x: Tensor) -> list[str]:
    """Names of the layers with a spatial output, in execution order (the automatic choice is among them)."""
    calls = _probe(model, x[:1], patch=_patch_size(model))
    return list(dict.fromkeys(c.name for c in calls if c.grid is not None))


def _candidates(spatial: list[_Call]) -> str:
    names = list(dict.fromkeys(c.name for c in spatial))
    if not names:
        return "this model has no layer with a spatial output; use a gradient method instead"
    choice = _automatic(spatial)
    shown = names[-8:]
    more = f" (and {len(names) - len(shown)} earlier)" if len(names) > len(shown) else ""
    default = f"; the automatic choice is {choice.name!r}" if choice else ""
    return f"use one of the spatial layers: {', '.join(shown)}{more}{default}"


def _one_by_one(shape: tuple[int, ...] | str) -> bool:
    """A convolutional output ``(N, C, 1, 1)``: a spatial layer shrunk to one cell (or a pooled vector)."""
    return isinstance(shape, tuple) and len(shape) == 4 and shape[-2:] == (1, 1) and shape[1] > 1


def _automatic(spatial: list[_Call]) -> LayerGrid | None:
    if not spatial:
        return None
    probed = [c for c in spatial if c.usable is not None]
    if probed:
        usable = [c for c in probed if c.usable and not isinstance(c.module, _POOLS) and not _projection(c)]
        if usable:
            return usable[-1].grid
    maps = [c for c in spatial if c.grid is not None and c.grid.layout != "tokens"]
    tokens = [c for c in spatial if c.grid is not None and c.grid.layout == "tokens"]
    if tokens and (not maps or tokens[-1].order > maps[-1].order):
        return _last_block_norm(tokens)
    # Post-order: a parent's hook runs after its children's, so the last call is the outermost module.
    # Pooling layers are skipped: VGG's 7×7 adaptive pool would tie the map's size to the input's.
    unpooled = [c for c in maps if not isinstance(c.module, _POOLS)]
    return (unpooled or maps)[-1].grid


def _projection(call: _Call) -> bool:
    """A token-wise linear map (``qkv``, ``fc1``, a token-wise classifier): not a layer of the token stream."""
    return call.grid is not None and call.grid.layout == "tokens" and isinstance(call.module, (nn.Linear, nn.Conv1d))


def _last_block_norm(tokens: list[_Call]) -> LayerGrid | None:
    """The first norm of the last transformer block (a parent holding two or more norms)."""
    by_parent: dict[str, list[_Call]] = {}
    for call in tokens:
        if isinstance(call.module, _NORMS):
            by_parent.setdefault(call.name.rpartition(".")[0], []).append(call)
    blocks = [calls for calls in by_parent.values() if len(calls) >= 2]
    if blocks:
        last = max(blocks, key=lambda calls: calls[-1].order)
        return last[0].grid
    return tokens[-1].grid


def _probe(model: nn.Module, x1: Tensor, *, patch: tuple[int, int] | None, gradients: bool = False) -> list[_Call]:
    """Every module call of one forward pass of ``x1``: its output's shape and spatial grid, and (with
    ``gradients``) whether the top class's score depends on the layer's positions."""
    calls: list[_Call] = []
    outputs: list[Tensor | None] = []
    height, width = int(x1.shape[-2]), int(x1.shape[-1])
    names = {id(m): n for n, m in model.named_modules() if n}

    def record(module: nn.Module, args: object, output: object) -> None:
        name = names[id(module)]
        if isinstance(output, Tensor):
            grid = _grid_of(name, tuple(output.shape), height, width, patch)
            calls.append(_Call(len(calls), name, module, tuple(output.shape), grid))
            outputs.append(output if grid is not None and output.requires_grad else None)
        else:
            calls.append(_Call(len(calls), name, module, f"a {type(output).__name__}", None))
            outputs.append(None)

    modules = [m for n, m in model.named_modules() if n]
    # eval mode: a probe must not move BatchNorm statistics
    with hooks(modules, record), explaining(model), torch.set_grad_enabled(gradients):
        xin = x1.detach().requires_grad_(gradients)
        output = model(xin)
        usable = _usable(output, calls, outputs) if gradients else None
    if usable is None:
        return calls
    return [replace(c, usable=usable.get(c.order, False)) if c.grid is not None else c for c in calls]


def _usable(output: object, calls: list[_Call], outputs: list[Tensor | None]) -> dict[int, bool] | None:
    """Per spatial call: does the top class's score depend on two or more of its positions, and do its
    activations differ between positions? None when the output holds no class scores to differentiate."""
    try:
        scores, _ = class_scores(output, 1)
    except ModelOutputError:
        return None
    score = scores[0].max()
    wanted = [i for i, t in enumerate(outputs) if t is not None]
    if not score.requires_grad or not wanted:
        return None
    # The same tensor may be the output of several calls (a block and its last layer): differentiate it once.
    unique: dict[int, Tensor] = {}
    for i in wanted:
        unique.setdefault(id(outputs[i]), outputs[i])  # type: ignore[arg-type]
    tensors = list(unique.values())
    grads = dict(zip((id(t) for t in tensors), torch.autograd.grad(score, tensors, allow_unused=True), strict=True))
    found: dict[int, bool] = {}
    for i in wanted:
        grid = calls[i].grid
        activation = outputs[i]
        grad = grads[id(activation)]
        assert grid is not None and activation is not None
        found[calls[i].order] = grad is not None and _depends(grid, activation.detach(), grad)
    return found


def _depends(grid: LayerGrid, activation: Tensor, grad: Tensor) -> bool:
    reach = grid.to_maps(grad).abs().sum(1).flatten()  # (h·w,) for the one sample
    if int((reach > 0).sum()) < 2:
        return False
    maps = grid.to_maps(activation).flatten(2)[0].double()  # (C, h·w)
    spread = float((maps.amax(1) - maps.amin(1)).max())
    return spread > _CONSTANT * max(float(maps.abs().max()), 1e-30)


def _grid_of(
    name: str, shape: tuple[int, ...], height: int, width: int, patch: tuple[int, int] | None
) -> LayerGrid | None:
    if len(shape) == 4:
        _, a, b, c = shape
        if _is_grid(b, c, height, width):
            return LayerGrid(name, "nchw", (b, c))
        if _is_grid(a, b, height, width) and c > 1:
            return LayerGrid(name, "nhwc", (a, b))
        return None
    if len(shape) == 3 and shape[2] > 1:  # (N, T, 1) is a pooled vector seen sideways, not one-channel tokens
        found = token_grid(shape[1], height, width, patch)
        if found is not None:
            (h, w), prefix = found
            return LayerGrid(name, "tokens", (h, w), prefix)
    return None


def _is_grid(h: int, w: int, height: int, width: int) -> bool:
    """Whether an ``h × w`` map can be a downsampled ``height × width`` image (similar strides both ways)."""
    if h * w <= 1 or h > height or w > width:
        return False
    sh, sw = height / h, width / w
    return abs(sh - sw) <= 0.25 * max(sh, sw) + 1.0


def token_grid(
    n_tokens: int, height: int, width: int, patch: tuple[int, int] | None
) -> tuple[tuple[int, int], int] | None:
    """``((h, w), prefix)`` for ``n_tokens`` tokens of a ``height × width`` input, or None.

    With the model's patch size the grid is ``(height // ph, width // pw)`` and the prefix (class,
    distillation, register tokens) whatever is left. Without it, the smallest prefix whose remaining
    token count factors into a grid of the input's aspect ratio wins.
    """
    if patch is not None:
        h, w = height // patch[0], width // patch[1]
        prefix = n_tokens - h * w
        if h * w > 1 and 0 <= prefix <= _MAX_PREFIX_TOKENS:
            return (h, w), prefix
    for prefix in range(min(_MAX_PREFIX_TOKENS, n_tokens - 2) + 1):
        n = n_tokens - prefix
        h = max(1, round(math.sqrt(n * height / width)))
        for hh in (h, h - 1, h + 1):
            fits = hh >= 1 and n % hh == 0 and n // hh > 0 and _is_grid(hh, n // hh, height, width)
            if fits and abs(hh / (n // hh) - height / width) <= 0.25 * height / width:
                return (hh, n // hh), prefix
    return None


def _patch_size(model: nn.Module) -> tuple[int, int] | None:
    """The patch size of a ViT-like model: timm's ``patch_embed.patch_size``, torchvision's ``patch_size``,
    or the first convolution whose stride equals its kernel (a patchifier)."""
    embed = getattr(model, "patch_embed", None)
    size = getattr(embed, "patch_size", None) if embed is not None else getattr(model, "patch_size", None)
    if isinstance(size, int):
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return (int(size[0]), int(size[1]))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            k, s = tuple(module.kernel_size), tuple(module.stride)
            return (int(k[0]), int(k[1])) if k == s and k[0] > 1 else None
    return None
