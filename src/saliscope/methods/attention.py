"""Reading a transformer's attention matrices during one forward pass, and saying why when rollout cannot.

Attention rollout needs, for every layer, one softmax matrix that says how much each token reads from
every other token of the image. Three kinds of model hand it over, read by hooks that live only for the
call:

- timm: every module with an ``attn_drop`` submodule computes its attention explicitly and passes it
  through ``attn_drop`` once its fused kernel (``fused_attn``) is switched off for the call. This covers
  the plain, distilled, register-token and relative-position ViTs, DeiT, EVA, BEiT, CaiT (talking-heads
  and class-attention blocks), ConViT (gated positional self-attention, class token added late) and
  VOLO's class attention, whatever the block classes are called.
- PyTorch's ``nn.MultiheadAttention`` (torchvision's ViT), asked for its per-head weights for the call.
- Hugging Face ``transformers`` models, asked for ``output_attentions=True`` with the eager attention
  implementation for the call (``ViT``, ``DeiT``, ``BEiT``, ``DINOv2``, ... ).

Where rollout does not apply, the refusal names the architecture's reason: attention inside local
windows, pooled keys, a token grid that shrinks between stages, linear attention, attention between
channels. Known families are recognised by their classes before anything runs (:data:`NOT_GLOBAL`); any
other model is judged by the shapes of the matrices it produced.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..core.errors import MethodError

Kind = Literal["self", "class"]
USE_INSTEAD = "use a CAM such as saliscope.GradCAM(model) (its automatic layer fits this model), or Gradient"
USE_INSTEAD_CLI = "use --method gradcam (its automatic layer fits this model), or --method gradient"

_SO = "so no attention matrix relates every token to every other"
_WINDOWED = f"attends only within local windows, {_SO}"
_PYRAMID = "its token grid shrinks between stages, so the layers' attention matrices do not chain"

#: Architectures (a model's class, or the class of one of its modules) whose attention rollout cannot read,
#: and why. Keys are class names so that no optional package has to be imported to check them.
NOT_GLOBAL: dict[str, str] = {
    "SwinTransformer": f"Swin attends only within local windows (shifted between blocks), {_SO}",
    "SwinTransformerV2": f"Swin-v2 attends only within local windows (shifted between blocks), {_SO}",
    "SwinTransformerV2Cr": f"Swin-v2 attends only within local windows (shifted between blocks), {_SO}",
    "MaxxVit": "MaxViT / CoAtNet attend within windows and grids (MaxViT) or only in late stages at two "
    f"resolutions after convolutions (CoAtNet); {_PYRAMID}",
    "TinyVit": f"TinyViT {_WINDOWED}",
    "Hiera": f"Hiera attends within mask units (local windows) and pools its queries between stages; {_PYRAMID}",
    "DaVit": "DaViT alternates windowed attention with attention between channels, not tokens",
    "GlobalContextVit": f"GC ViT attends only within local windows (global context enters as extra queries), {_SO}",
    "EfficientVit": "EfficientViT (MIT) uses linear ReLU attention: no softmax attention matrix exists",
    "EfficientVitLarge": "EfficientViT (MIT) uses linear ReLU attention: no softmax attention matrix exists",
    "EfficientVitMsra": f"EfficientViT (MSRA) attends within local windows (cascaded group attention); {_PYRAMID}",
    "Xcit": "XCiT's attention (cross-covariance) runs between channels, not between tokens",
    "PyramidVisionTransformerV2": f"PVT-v2 pools its keys and values (spatial-reduction attention); {_PYRAMID}",
    "Twins": "Twins alternates attention within local groups with attention over sub-sampled keys",
    "MultiScaleVit": f"MViT-v2 pools its keys, values and queries (pooling attention); {_PYRAMID}",
    "PoolingVisionTransformer": f"PiT pools its tokens between stages (14×14, 7×7, 4×4 at 224 px); {_PYRAMID}",
    "Nest": "NesT attends only within nested image blocks that are merged between levels",
    "CrossVit": "CrossViT runs two branches over two token grids of different patch sizes, joined only through "
    "their class tokens",
    "CoaT": "CoaT's factorised attention (softmax over keys, then keys × values) forms no token-to-token matrix",
    "Levit": f"LeViT subsamples its tokens with attention between stages; {_PYRAMID}",
    "LevitDistilled": f"LeViT subsamples its tokens with attention between stages; {_PYRAMID}",
    "EfficientFormer": "EfficientFormer attends only in its last stage, after four convolution and pooling stages "
    "that rollout cannot pass through",
    "EfficientFormerV2": f"EfficientFormerV2 attends on 2-D maps with strided (down-sampling) attention; {_PYRAMID}",
    "NextViT": f"Next-ViT pools its keys and values (efficient multi-head attention); {_PYRAMID}",
    "TNT": "TNT nests two transformers: attention within each patch's pixels and across patches",
    "Visformer": f"Visformer attends in two stages at two resolutions; {_PYRAMID}",
    "VOLO": "VOLO's first stage uses outlook attention: each token attends only to its 3×3 neighbourhood",
    "CSATv2": f"CSATv2 attends only in late stages of a convolutional pyramid; {_PYRAMID}",
    "SwiftFormer": "SwiftFormer's additive attention is linear: no token-to-token attention matrix exists",
    "SHViT": f"SHViT's single-head attention runs on a convolutional pyramid; {_PYRAMID}",
    "EdgeNeXt": "EdgeNeXt's attention (SDTA) runs between channels, not between tokens",
    "MobileVitBlock": "MobileViT attends only among pixels at the same offset in different patches of a "
    "convolutional feature map",
    "LinearSelfAttention": "MobileViT-v2's separable self-attention is linear: no token-to-token attention matrix",
    "HaloAttn": "halo attention is local: each block of pixels attends to a window around it",
    "BottleneckAttn": "BoTNet attends only inside the last convolutional stages (no token sequence to roll out)",
    "LambdaLayer": "lambda layers summarise their context linearly: no attention matrix exists",
    "MetaFormer": f"CAFormer attends only in its last two stages, after convolutional stages; {_PYRAMID}",
    "FastVit": f"FastViT attends (in its SA variants) only in its last stage, after convolutional stages; {_PYRAMID}",
    "AttentionPoolLatent": "its head pools the tokens with a latent-query attention (global_pool='map') that timm "
    "computes in one fused step, so the last step from the tokens to the prediction cannot be read",
}
# Hugging Face model types whose attention is not one global matrix over the image tokens.
_HF_NOT_GLOBAL: dict[str, str] = {
    "swin": NOT_GLOBAL["SwinTransformer"],
    "swinv2": NOT_GLOBAL["SwinTransformerV2"],
    "donut-swin": NOT_GLOBAL["SwinTransformer"],
    "dinat": f"DiNAT attends only within (dilated) neighbourhoods, {_SO}",
    "nat": f"NAT attends only within neighbourhoods, {_SO}",
    "pvt": NOT_GLOBAL["PyramidVisionTransformerV2"],
    "pvt_v2": NOT_GLOBAL["PyramidVisionTransformerV2"],
    "levit": NOT_GLOBAL["Levit"],
    "mobilevit": NOT_GLOBAL["MobileVitBlock"],
    "mobilevitv2": NOT_GLOBAL["LinearSelfAttention"],
    "efficientformer": NOT_GLOBAL["EfficientFormer"],
    "cvt": f"CvT uses convolutional projections over a pyramid; {_PYRAMID}",
    "hiera": NOT_GLOBAL["Hiera"],
}


@dataclass(frozen=True)
class Collected:
    """One layer's attention: the tensor in the autograd graph, and the ``(N, heads, Tq, Tk)`` shape to read
    it (and its gradient) as. ``kind``: ``"self"`` (every token attends) or ``"class"`` (only the class token
    attends, as in CaiT's class-attention blocks)."""

    tensor: Tensor
    shape: tuple[int, ...]
    kind: Kind = "self"

    def heads(self, grad: Tensor | None = None) -> Tensor:
        return (self.tensor if grad is None else grad).reshape(self.shape)


def _timm_attention(module: nn.Module) -> bool:
    return isinstance(getattr(module, "attn_drop", None), nn.Module)


def hf_model(net: nn.Module) -> nn.Module | None:
    """The outermost Hugging Face ``PreTrainedModel`` in ``net`` (``net`` itself or a wrapped one), or None."""
    from ..models.hf_zoo import is_hf_model

    return next((m for m in net.modules() if is_hf_model(m)), None)


def _hf_has_attention(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    return any(getattr(config, name, None) for name in ("num_attention_heads", "num_heads"))


def has_attention(net: nn.Module) -> bool:
    """Whether the model has attention layers attention rollout could read (timm, torch or Hugging Face)."""
    hf = hf_model(net)
    if hf is not None and _hf_has_attention(hf):
        return True
    return any(_timm_attention(m) or isinstance(m, nn.MultiheadAttention) for m in net.modules())


def refusal(net: nn.Module) -> str | None:
    """Why attention rollout does not apply to this model, known before running it (None: it may apply)."""
    hf = hf_model(net)
    if hf is not None:
        reason = _HF_NOT_GLOBAL.get(str(getattr(getattr(hf, "config", None), "model_type", "")))
        if reason is not None:
            return reason
        if not _hf_has_attention(hf):
            return f"{type(hf).__name__} has no attention layers (it is a convolutional network)"
        return None
    names = [type(net).__name__] + [type(m).__name__ for m in net.modules()]
    for name in names:
        if name in NOT_GLOBAL:
            if name == "MetaFormer" and not has_attention(net):
                break  # PoolFormer / ConvFormer: no attention at all
            return NOT_GLOBAL[name]
    if not has_attention(net):
        return f"{type(net).__name__} has no attention layers (it is a convolutional or MLP network)"
    return None


def refuse(reason: str) -> MethodError:
    return MethodError(f"attention rollout does not apply: {reason}", USE_INSTEAD, USE_INSTEAD_CLI)


@contextmanager
def attention_maps(net: nn.Module) -> Iterator[list[Collected]]:
    """Collect every attention matrix of a forward pass, in layer order; refuses models it cannot read."""
    reason = refusal(net)
    if reason is not None:
        raise refuse(reason)
    found: list[Collected] = []
    with ExitStack() as stack:
        hf = hf_model(net)
        if hf is not None:
            _read_hf(stack, hf, found)
        else:
            _read_timm(stack, net, found)
            _read_torch(stack, net, found)
        yield found


def _read_timm(stack: ExitStack, net: nn.Module, found: list[Collected]) -> None:
    def keep(_module: nn.Module, _args: Any, output: Tensor) -> None:
        if isinstance(output, Tensor) and output.ndim == 4 and output.shape[-2] == 1 < output.shape[-1]:
            found.append(Collected(output, tuple(output.shape), "class"))
        elif isinstance(output, Tensor):
            found.append(Collected(output, tuple(output.shape)))

    for block in (m for m in net.modules() if _timm_attention(m)):
        was = getattr(block, "fused_attn", None)
        if isinstance(was, bool):
            setattr(block, "fused_attn", False)  # noqa: B010 (a plain attribute, not a submodule)
            stack.callback(setattr, block, "fused_attn", was)
        drop: nn.Module = getattr(block, "attn_drop")  # noqa: B009
        stack.callback(drop.register_forward_hook(keep).remove)


def _read_torch(stack: ExitStack, net: nn.Module, found: list[Collected]) -> None:
    def ask_weights(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def keep_weights(_module: nn.Module, _args: Any, _kwargs: Any, output: tuple[Tensor, Tensor]) -> None:
        # The weights returned are a view made after the weights were used; gradients exist only for the
        # softmax output it views, (N·heads, T, T). Keep that one, viewed per head (same memory).
        weights = output[1]
        base = weights._base if weights._base is not None and weights._base.numel() == weights.numel() else weights
        found.append(Collected(base, tuple(weights.shape)))

    for module in (m for m in net.modules() if isinstance(m, nn.MultiheadAttention)):
        stack.callback(module.register_forward_pre_hook(ask_weights, with_kwargs=True).remove)
        stack.callback(module.register_forward_hook(keep_weights, with_kwargs=True).remove)


def _read_hf(stack: ExitStack, model: nn.Module, found: list[Collected]) -> None:
    """``output_attentions=True`` and eager attention for the call: the softmax matrices come back in the
    model's output, still in the autograd graph."""
    _keep_hooks_as_found(stack, model)
    config: Any = model.config
    previous = getattr(config, "_attn_implementation", None)
    if previous not in (None, "eager"):
        _set_attention(model, "eager")
        stack.callback(_set_attention, model, previous)

    def ask(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return args, {**kwargs, "output_attentions": True}

    def keep(_module: nn.Module, _args: Any, _kwargs: Any, output: Any) -> None:
        attentions = output.get("attentions") if hasattr(output, "get") else None
        if not attentions or any(a is None for a in attentions):
            raise refuse(f"{type(model).__name__} returned no attention weights with output_attentions=True")
        found.extend(Collected(a, tuple(a.shape)) for a in attentions)

    stack.callback(model.register_forward_pre_hook(ask, with_kwargs=True).remove)
    stack.callback(model.register_forward_hook(keep, with_kwargs=True).remove)


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
)
_HF_HOOKS_FLAG = "_output_capturing_hooks_installed"


def _keep_hooks_as_found(stack: ExitStack, model: nn.Module) -> None:
    """On exit, drop the hooks ``transformers`` installs on first use of ``output_attentions`` (inert
    recorders it keeps for good, with a flag saying they are there): the model is left as it was found."""
    before = {id(m): {d: set(getattr(m, d, {})) for d in _HOOK_DICTS} for m in model.modules()}
    flags = {id(m): getattr(m, _HF_HOOKS_FLAG) for m in model.modules() if hasattr(m, _HF_HOOKS_FLAG)}

    def restore() -> None:
        for m in model.modules():
            for d in _HOOK_DICTS:
                hooks = getattr(m, d, None)
                if hooks is None:
                    continue
                for key in [k for k in hooks if k not in before.get(id(m), {}).get(d, set())]:
                    del hooks[key]
            if id(m) in flags:
                setattr(m, _HF_HOOKS_FLAG, flags[id(m)])
            elif hasattr(m, _HF_HOOKS_FLAG):
                delattr(m, _HF_HOOKS_FLAG)

    stack.callback(restore)


def _set_attention(model: nn.Module, implementation: str) -> None:
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        setter(implementation)
    else:  # transformers before set_attn_implementation: the attribute the attention layers read
        config: Any = model.config
        config._attn_implementation = implementation


def global_layers(found: list[Collected], batch: int) -> list[Collected]:
    """The collected matrices, checked to be one global softmax over the tokens per image and layer, with a
    token count that never shrinks (a class token added late may grow it). Raises the architecture's reason."""
    if not found:
        raise refuse("the forward pass computed no attention matrix that can be read (no softmax attention)")
    previous = 0
    for layer in found:
        shape = layer.shape
        if len(shape) != 4:
            raise refuse(f"its attention has shape {shape}: local (outlook or neighbourhood) attention")
        n, _heads, queries, keys = shape
        if n != batch and n % batch == 0:
            raise refuse(f"its attention is split into {n // batch} windows per image: it {_WINDOWED}")
        if n != batch:
            raise refuse(f"its attention has {n} rows for {batch} images: not one matrix per image")
        if layer.kind == "self" and queries != keys:
            raise refuse(f"its attention relates {queries} queries to {keys} keys: keys and values are pooled")
        if keys < previous:
            raise refuse(f"the number of tokens shrinks from {previous} to {keys}: {_PYRAMID}")
        previous = keys
    return found


def readout(net: nn.Module, prefix: int) -> Literal["class", "class+distillation", "patches", "class+patches"]:
    """Which rows of the rolled-out matrix the prediction reads: the class token's, the class and
    distillation tokens' (DeiT averages both heads), the patch tokens' mean (average-pooled models) or both
    the class token and the patch mean (DINOv2's classifier)."""
    hf = hf_model(net)
    if hf is not None:
        name = type(hf).__name__
        if "WithTeacher" in name and prefix >= 2:
            return "class+distillation"
        if name.startswith("Dinov2") and prefix >= 1:
            return "class+patches"
        if getattr(getattr(hf, "config", None), "use_mean_pooling", False) or prefix == 0:
            return "patches"
        return "class"
    pool = getattr(net, "global_pool", None)
    if (isinstance(pool, str) and pool not in ("token", "")) or prefix == 0:
        return "patches"
    distilled = getattr(net, "dist_token", None) is not None and not getattr(net, "distilled_training", False)
    return "class+distillation" if distilled and prefix >= 2 else "class"


def fuse_heads(attention: Tensor, how: str) -> Tensor:
    """``(N, heads, Tq, Tk)`` → ``(N, Tq, Tk)``."""
    if how == "mean":
        return attention.mean(1)
    return attention.amax(1) if how == "max" else attention.amin(1)


def grow(relevance: Tensor, tokens: int) -> Tensor:
    """Rows for tokens added in front (a class token added late) carry no image information yet."""
    extra = tokens - int(relevance.shape[-2])
    if extra <= 0:
        return relevance
    zeros = torch.zeros(
        *relevance.shape[:-2], extra, relevance.shape[-1], dtype=relevance.dtype, device=relevance.device
    )
    return torch.cat([zeros, relevance], dim=-2)
