"""Attention-based explanations for Vision Transformers: attention rollout and gradient-weighted rollout.

The attention matrices are read with hooks that live only for the call: timm's ``Attention`` modules
(their fused kernel is switched off for the call, so the softmax probabilities exist, and switched back on
afterwards) and ``nn.MultiheadAttention`` (torchvision's ViT; asked for its per-head weights for the call).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ..core.cost import CostMeter
from ..core.errors import InputError, MethodError
from ..core.targets import BoundTarget
from .base import Attribution, Explainer, Precision
from .cam.base import upsample
from .layers import _patch_size, token_grid

HeadFusion = Literal["mean", "max", "min"]


def _timm_attention(module: nn.Module) -> bool:
    return hasattr(module, "fused_attn") and isinstance(getattr(module, "attn_drop", None), nn.Module)


@dataclass(frozen=True)
class Collected:
    """One layer's attention: the tensor in the autograd graph, and the ``(N, heads, T, T)`` shape to read
    it (and its gradient) as."""

    tensor: Tensor
    shape: tuple[int, ...]

    def heads(self, grad: Tensor | None = None) -> Tensor:
        return (self.tensor if grad is None else grad).reshape(self.shape)


def has_attention(net: nn.Module) -> bool:
    """Whether attention rollout can read this model's attention (timm or torch attention modules)."""
    return any(_timm_attention(m) or isinstance(m, nn.MultiheadAttention) for m in net.modules())


@contextmanager
def attention_maps(net: nn.Module) -> Iterator[list[Collected]]:
    """Collect every attention matrix ``(N, heads, T, T)`` of a forward pass, in layer order."""
    found: list[Collected] = []
    timm_blocks = [m for m in net.modules() if _timm_attention(m)]
    mha = [m for m in net.modules() if isinstance(m, nn.MultiheadAttention)]
    if not has_attention(net):
        raise MethodError(
            f"found no attention modules in {type(net).__name__}",
            "attention rollout needs a Vision Transformer (timm ViT / DeiT, torchvision ViT); "
            "for a CNN use a CAM such as 'gradcam'",
        )

    def keep(_module: nn.Module, _args: Any, output: Tensor) -> None:
        found.append(Collected(output, tuple(output.shape)))

    def ask_weights(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def keep_weights(_module: nn.Module, _args: Any, _kwargs: Any, output: tuple[Tensor, Tensor]) -> None:
        # The weights returned are a view made after the weights were used; gradients exist only for the
        # softmax output it views, (N·heads, T, T). Keep that one, viewed per head (same memory).
        weights = output[1]
        base = weights._base if weights._base is not None and weights._base.numel() == weights.numel() else weights
        found.append(Collected(base, tuple(weights.shape)))

    with ExitStack() as stack:
        for block in timm_blocks:
            was = block.fused_attn
            block.fused_attn = False
            stack.callback(setattr, block, "fused_attn", was)
            stack.callback(block.attn_drop.register_forward_hook(keep).remove)
        for module in mha:
            stack.callback(module.register_forward_pre_hook(ask_weights, with_kwargs=True).remove)
            stack.callback(module.register_forward_hook(keep_weights, with_kwargs=True).remove)
        yield found


class _Rollout(Explainer):
    """Shared: run the model with attention hooks, combine the layers, read the class token's row."""

    uses_gradients: ClassVar[bool] = False

    def chunk_key(self, x: Tensor) -> tuple[object, ...]:
        return ("rollout", self.uses_gradients, tuple(x.shape[1:]), x.dtype, x.device.type)

    def _attribute(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        maps, scores = [], []
        spans = self.chunker.spans(
            int(x.shape[0]),
            key=self.chunk_key(x),
            device=x.device,
            params=net.parameters,
            forward_only=not self.uses_gradients,
        )
        for start, stop in spans:
            part = target.take(torch.arange(start, stop))
            xin = x[start:stop].detach().requires_grad_(self.uses_gradients)
            with attention_maps(net) as attentions, torch.set_grad_enabled(self.uses_gradients):
                s = part(net(xin))
            meter.forward(stop - start)
            heads = [a.heads() for a in attentions]
            if any(a.shape[0] != stop - start or a.shape[-1] != a.shape[-2] for a in heads):
                raise MethodError(
                    "the model's attention is windowed or pooled (e.g. Swin), not one global attention per image",
                    "attention rollout needs a plain ViT / DeiT; for Swin use a CAM such as 'gradcam'",
                )
            grads = None
            if self.uses_gradients:
                raw = torch.autograd.grad(s.sum(), [a.tensor for a in attentions])
                grads = tuple(a.heads(g) for a, g in zip(attentions, raw, strict=True))
                meter.backward(stop - start)
            relevance = self.combine([h.detach() for h in heads], grads)  # (n, T, T)
            maps.append(self._token_map(net, relevance, x))
            scores.append(s.detach())
        grid_maps = torch.cat(maps)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        return Attribution(upsample(grid_maps, size), scores=torch.cat(scores), extras={"layer_map": grid_maps})

    def combine(self, attentions: list[Tensor], grads: tuple[Tensor, ...] | None) -> Tensor:
        raise NotImplementedError

    def _token_map(self, net: nn.Module, relevance: Tensor, x: Tensor) -> Tensor:
        n_tokens = int(relevance.shape[-1])
        found = token_grid(n_tokens, int(x.shape[-2]), int(x.shape[-1]), _patch_size(net))
        if found is None:
            raise MethodError(
                f"cannot lay {n_tokens} tokens out as a grid for a {x.shape[-2]}×{x.shape[-1]} input",
                "use a ViT whose tokens are a class token (or none) plus one token per patch",
            )
        (h, w), prefix = found
        # With a class token, its row says what the prediction read; without one, average all rows.
        rows = relevance[:, 0, prefix:] if prefix > 0 else relevance[:, :, prefix:].mean(1)
        return rows.reshape(-1, h, w)


class AttentionRollout(_Rollout):
    """Attention rollout: ``R = prod_l (0.5 · A_l + 0.5 · I)`` with heads fused (``head_fusion``: mean,
    max or min); the map is the class token's row of ``R`` over the patch tokens (the mean row for models
    without a class token). Class-agnostic: the target does not change it.

    Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020.
    """

    name: ClassVar[str] = "attention-rollout"

    def __init__(
        self,
        model: nn.Module,
        *,
        head_fusion: HeadFusion = "mean",
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        precision: Precision = "auto",
    ) -> None:
        super().__init__(model, chunk_size=chunk_size, memory_budget=memory_budget, precision=precision)
        if head_fusion not in ("mean", "max", "min"):
            raise InputError(f"unknown head_fusion {head_fusion!r}", "use 'mean', 'max' or 'min'")
        self.head_fusion: HeadFusion = head_fusion

    def params(self) -> dict[str, Any]:
        return {**super().params(), "head_fusion": self.head_fusion}

    def fuse(self, attention: Tensor) -> Tensor:
        """Heads ``(N, heads, T, T)`` → ``(N, T, T)``."""
        if self.head_fusion == "mean":
            return attention.mean(1)
        return attention.amax(1) if self.head_fusion == "max" else attention.amin(1)

    def combine(self, attentions: list[Tensor], grads: tuple[Tensor, ...] | None) -> Tensor:
        rollout = None
        for attention in attentions:
            a = self.fuse(attention)
            eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
            a = 0.5 * a + 0.5 * eye
            a = a / a.sum(-1, keepdim=True)
            rollout = a if rollout is None else a @ rollout
        assert rollout is not None
        return rollout


class GradientRollout(_Rollout):
    """Gradient-weighted rollout: each layer's attention weighted by its gradient, ``Ā = E_h[(∇A ⊙ A)⁺]``,
    accumulated as ``R ← R + Ā R`` from ``R = I``; class-specific.

    Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers", ICCV 2021.
    """

    name: ClassVar[str] = "gradient-rollout"
    uses_gradients: ClassVar[bool] = True

    def combine(self, attentions: list[Tensor], grads: tuple[Tensor, ...] | None) -> Tensor:
        assert grads is not None
        relevance = None
        for attention, grad in zip(attentions, grads, strict=True):
            a = (grad * attention).clamp(min=0).mean(1)
            if relevance is None:
                relevance = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype).expand_as(a).clone()
            relevance = relevance + a @ relevance
        assert relevance is not None
        return relevance
