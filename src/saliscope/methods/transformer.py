"""Attention-based explanations for Vision Transformers: attention rollout and gradient-weighted rollout.

The attention matrices are read as :mod:`saliscope.methods.attention` describes (timm, torch and Hugging Face
models, with hooks that live only for the call). Layers are chained over the tokens they share: a class token
that joins late (CaiT, ConViT) starts with no image information, and a class-attention block (CaiT's, VOLO's)
updates only the class token's row. The map is read from the rows the prediction reads: the class token's,
the class and distillation tokens' (DeiT), the mean of the patch tokens' (average-pooled ViTs, BEiT) or the
class token's and the patch mean's together (DINOv2's classifier).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ..core.cost import CostMeter
from ..core.errors import InputError, MethodError
from ..core.targets import BoundTarget
from .attention import (
    Collected,
    attention_maps,
    fuse_heads,
    global_layers,
    grow,
    has_attention,
    readout,
    refusal,
    refuse,
)
from .base import Attribution, Explainer, Precision
from .cam.base import upsample
from .layers import _patch_size, token_grid

HeadFusion = Literal["mean", "max", "min"]

__all__ = ["AttentionRollout", "Collected", "GradientRollout", "HeadFusion", "attention_maps", "has_attention"]


class _Rollout(Explainer):
    """Shared: run the model with attention hooks, combine the layers, read the class token's row."""

    uses_gradients: ClassVar[bool] = False

    def chunk_key(self, x: Tensor) -> tuple[object, ...]:
        return ("rollout", self.uses_gradients, tuple(x.shape[1:]), x.dtype, x.device.type)

    def _attribute(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        reason = refusal(net)  # known architectures are refused before any pass runs
        if reason is not None:
            raise refuse(reason)
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
            layers = global_layers(attentions, stop - start)
            heads = [a.heads() for a in layers]
            grads = None
            if self.uses_gradients:
                raw = torch.autograd.grad(s.sum(), [a.tensor for a in layers], allow_unused=True)
                grads = tuple(
                    torch.zeros_like(h) if g is None else a.heads(g) for a, h, g in zip(layers, heads, raw, strict=True)
                )
                meter.backward(stop - start)
            kinds = [a.kind for a in layers]
            relevance = self.combine([h.detach() for h in heads], grads, kinds)  # (n, T, T0)
            maps.append(self._token_map(net, relevance, x))
            scores.append(s.detach())
        grid_maps = torch.cat(maps)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        return Attribution(upsample(grid_maps, size), scores=torch.cat(scores), extras={"layer_map": grid_maps})

    def combine(
        self, attentions: list[Tensor], grads: tuple[Tensor, ...] | None, kinds: Sequence[str] | None = None
    ) -> Tensor:
        """Chain the layers: ``(N, T, T0)``, how much each final token draws from each token of the first layer."""
        kinds = kinds or ["self"] * len(attentions)
        first = attentions[0]
        t0 = int(first.shape[-1])
        relevance = torch.eye(t0, device=first.device, dtype=first.dtype).expand(first.shape[0], t0, t0).clone()
        for i, (attention, kind) in enumerate(zip(attentions, kinds, strict=True)):
            relevance = grow(relevance, int(attention.shape[-1]))
            step = self.step(attention, None if grads is None else grads[i])  # (N, Tq, Tk)
            if kind == "class":  # only the class token attends (and is updated)
                row = step[:, :1] @ relevance
                relevance = torch.cat([row, relevance[:, 1:]], dim=1)
            else:
                relevance = step @ relevance
        return relevance

    def step(self, attention: Tensor, grad: Tensor | None) -> Tensor:
        """One layer's ``(N, Tq, Tk)`` update matrix, applied as ``R ← step @ R``."""
        raise NotImplementedError

    def _token_map(self, net: nn.Module, relevance: Tensor, x: Tensor) -> Tensor:
        t0 = int(relevance.shape[-1])
        found = token_grid(t0, int(x.shape[-2]), int(x.shape[-1]), _patch_size(net))
        if found is None:
            raise MethodError(
                f"cannot lay {t0} tokens out as a grid for a {x.shape[-2]}×{x.shape[-1]} input",
                "use a ViT whose tokens are a class token (or none) plus one token per patch",
            )
        (h, w), first_prefix = found
        patches = relevance[:, :, first_prefix:]  # columns: the image's patches
        n_patches = h * w
        prefix = int(relevance.shape[1]) - n_patches  # the final layer's prefix tokens (class, distillation, ...)
        how = readout(net, prefix)
        patch_mean = patches[:, prefix:].mean(1)
        if how == "class":
            rows = patches[:, 0]
        elif how == "class+distillation":
            rows = patches[:, :2].mean(1)
        elif how == "class+patches":
            rows = 0.5 * (patches[:, 0] + patch_mean)
        else:
            rows = patch_mean
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
        """Heads ``(N, heads, Tq, Tk)`` → ``(N, Tq, Tk)``."""
        return fuse_heads(attention, self.head_fusion)

    def step(self, attention: Tensor, grad: Tensor | None) -> Tensor:
        a = self.fuse(attention)
        eye = torch.eye(a.shape[-2], a.shape[-1], device=a.device, dtype=a.dtype)
        a = 0.5 * a + 0.5 * eye
        return a / a.sum(-1, keepdim=True)


class GradientRollout(_Rollout):
    """Gradient-weighted rollout: each layer's attention weighted by its gradient, ``Ā = E_h[(∇A ⊙ A)⁺]``,
    accumulated as ``R ← R + Ā R`` from ``R = I``; class-specific.

    Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers", ICCV 2021.
    """

    name: ClassVar[str] = "gradient-rollout"
    uses_gradients: ClassVar[bool] = True

    def step(self, attention: Tensor, grad: Tensor | None) -> Tensor:
        assert grad is not None
        a = (grad * attention).clamp(min=0).mean(1)
        return torch.eye(a.shape[-2], a.shape[-1], device=a.device, dtype=a.dtype) + a
