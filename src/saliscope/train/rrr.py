"""Right for the right reasons: a loss that forbids a model to look where an annotator says it must not.

Ross, Hughes & Doshi-Velez 2017, "Right for the Right Reasons: Training Differentiable Models by
Constraining their Explanations" (IJCAI). The loss is the cross-entropy plus a penalty on the input
gradient inside an annotated irrelevant region ``A``::

    L = CE(f(x), y) + weight · mean_b  Σ_{c,h,w} A_bhw · (∂/∂x_bchw Σ_k log p_bk)²

The gradient is taken with ``create_graph=True``, so the penalty itself is differentiable in the weights
("double back-propagation"): minimising it teaches the model to be insensitive to the masked pixels.

``kind="gradcam"`` penalises Grad-CAM instead of the input gradient (as Schramowski et al. 2020, "Making
deep neural networks right for the right scientific reasons", do with their RRR-GC): the squared
Grad-CAM of every class, upsampled to the input, summed inside the mask. Two choices differ from the
displayed Grad-CAM, on purpose. The map is **signed** (no ReLU) and taken for **every class**: with a
ReLU'd map of the labelled class only, a model can move its use of the artefact into negative evidence
for the other class (the softmax only sees differences of logits) and go on using it unpenalised.
It is the weaker constraint: a map at the layer's coarse grid lets the model keep its evidence in cells
just outside the mask whose receptive fields still cover the artefact. On the shortcut benchmark it did
not remove the shortcut where the input-gradient penalty did (numbers in the README).

Both variants are plain functions of a batch, usable in any training loop::

    loss = rrr_loss(model, x, y, mask, weight=1000.0)
    loss.backward(); optimiser.step()

They leave no hooks on the model and do not change its train / eval mode or its parameters.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import InputError
from ..core.model_state import hooks
from ..core.validation import check_batch
from ..methods.layers import LayerGrid, resolve_layer

RRRKind = Literal["gradient", "gradcam"]
MaskLike = Tensor | np.ndarray

#: Default penalty weights: measured on the shortcut benchmark (inputs normalised to unit variance), where
#: 1000 makes the gradient penalty dominate while the model uses the masked region; tune per data set.
DEFAULT_WEIGHT: dict[str, float] = {"gradient": 1000.0, "gradcam": 1000.0}


@dataclass(frozen=True)
class RRRTerms:
    """The two parts of the loss and their weighted sum, each a scalar tensor.

    ``penalty`` is unweighted: ``total = cross_entropy + weight * penalty``.
    """

    total: Tensor
    cross_entropy: Tensor
    penalty: Tensor
    weight: float


def rrr_loss(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    irrelevant_mask: MaskLike,
    *,
    weight: float | None = None,
    kind: RRRKind = "gradient",
    layer: str | nn.Module | None = None,
) -> Tensor:
    """Cross-entropy plus the right-for-the-right-reasons penalty; a scalar to back-propagate.

    Args:
        model: maps ``(B, C, H, W)`` to ``(B, K)`` logits; used in whatever mode the caller left it.
        x: the batch ``(B, C, H, W)`` (not modified; gradients are taken on a detached copy unless ``x``
            already requires grad).
        y: class indices ``(B,)``.
        irrelevant_mask: where the model must not look, 1 / True = irrelevant; ``(B, 1, H, W)``,
            ``(B, H, W)``, ``(1, H, W)`` or ``(H, W)`` (broadcast over the batch and channels). Float
            values in [0, 1] weight the penalty per pixel.
        weight: the penalty's weight (``λ₁`` in Ross et al.); default :data:`DEFAULT_WEIGHT` of ``kind``.
        kind: ``"gradient"`` (input gradients, Ross et al. 2017) or ``"gradcam"`` (Grad-CAM mass).
        layer: for ``"gradcam"``, the layer to read (a name or module; None: automatic, as the CAMs do).

    Cost: one forward pass; ``"gradient"`` adds one differentiable backward pass, ``"gradcam"`` one per
    class (so for models with hundreds of classes prefer ``"gradient"``). See :func:`rrr_terms` for the two
    parts separately.
    """
    return rrr_terms(model, x, y, irrelevant_mask, weight=weight, kind=kind, layer=layer).total


def rrr_terms(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    irrelevant_mask: MaskLike,
    *,
    weight: float | None = None,
    kind: RRRKind = "gradient",
    layer: str | nn.Module | None = None,
) -> RRRTerms:
    """:func:`rrr_loss`, returning the cross-entropy and the unweighted penalty as well."""
    if kind not in ("gradient", "gradcam"):
        raise InputError(f"unknown rrr kind {kind!r}", "use kind='gradient' or kind='gradcam'")
    x = check_batch(x)
    labels = _check_labels(y, x)
    mask = as_mask(irrelevant_mask, x)
    w = DEFAULT_WEIGHT[kind] if weight is None else float(weight)
    if w < 0:
        raise InputError(f"the rrr weight must be non-negative, got {w}", "pass weight=1000.0 or so")
    # Grad mode on even inside a caller's no_grad block (a validation loop): the penalty is a gradient.
    with torch.enable_grad():
        if kind == "gradient":
            ce, penalty = _gradient_terms(model, x, labels, mask)
        else:
            ce, penalty = _gradcam_terms(model, x, labels, mask, layer)
    return RRRTerms(total=ce + w * penalty, cross_entropy=ce, penalty=penalty, weight=w)


def _gradient_terms(model: nn.Module, x: Tensor, y: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    # A fresh leaf, so the caller's tensor is never marked as requiring grad.
    inputs = x if x.requires_grad else x.detach().requires_grad_(True)
    logits = _logits(model(inputs), x)
    log_p = F.log_softmax(logits, dim=1)
    ce = F.nll_loss(log_p, y)
    # Σ_k log p_k, as in Ross et al.: the model must be insensitive there for every class, not only y.
    (grad,) = torch.autograd.grad(log_p.sum(), inputs, create_graph=True)
    penalty = (mask * grad.pow(2)).sum(dim=(1, 2, 3)).mean()
    return ce, penalty


def _gradcam_terms(
    model: nn.Module, x: Tensor, y: Tensor, mask: Tensor, layer: str | nn.Module | None
) -> tuple[Tensor, Tensor]:
    grid = _layer_grid(model, x, layer)
    seen: list[Tensor] = []

    def keep(_module: nn.Module, _args: object, output: Tensor) -> Tensor:
        seen.append(output)  # kept in the graph (no detach): the penalty must reach the weights below
        # The rest of the network gets a clone, so an in-place activation after the layer cannot
        # overwrite the activations the map is made of.
        return output.clone()

    with hooks([model.get_submodule(grid.name)], keep):
        logits = _logits(model(x), x)
    if not seen:
        raise InputError(f"layer {grid.name!r} was not called in the forward pass", "pass another layer=")
    raw = seen[-1]  # a module used twice: its last call is the one nearest the output, as in the CAMs
    activations = grid.to_maps(raw)  # (B, C, h, w)
    ce = F.cross_entropy(logits, y)
    size = (int(x.shape[-2]), int(x.shape[-1]))
    penalty = logits.new_zeros(())
    for k in range(logits.shape[1]):
        (grad_raw,) = torch.autograd.grad(logits[:, k].sum(), raw, create_graph=True)
        alpha = grid.to_maps(grad_raw).mean(dim=(2, 3), keepdim=True)  # Grad-CAM's channel weights
        cam = (alpha * activations).sum(dim=1, keepdim=True)  # signed, (B, 1, h, w)
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
        penalty = penalty + (mask * cam.pow(2)).sum(dim=(1, 2, 3)).mean()
    return ce, penalty


# A probe forward per call would double the cost of a training step; the layer is found once per model
# and input shape. Weak keys: the cache never keeps a model alive.
_GRIDS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[object, ...], LayerGrid]] = weakref.WeakKeyDictionary()


def _layer_grid(model: nn.Module, x: Tensor, layer: str | nn.Module | None) -> LayerGrid:
    key = (layer if isinstance(layer, str) or layer is None else id(layer), tuple(x.shape[1:]))
    cached = _GRIDS.setdefault(model, {})
    if key not in cached:
        cached[key] = resolve_layer(model, x.detach(), layer)
    return cached[key]


def _logits(output: object, x: Tensor) -> Tensor:
    if not isinstance(output, Tensor) or output.ndim != 2 or output.shape[0] != x.shape[0]:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise InputError(
            f"rrr_loss needs a classifier returning (B, K) logits, got {shape}",
            "wrap the model so that it returns the class logits",
        )
    return output


def _check_labels(y: object, x: Tensor) -> Tensor:
    if not isinstance(y, Tensor) or y.ndim != 1 or y.shape[0] != x.shape[0] or y.is_floating_point():
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise InputError(
            f"labels must be an integer tensor (B,) = ({x.shape[0]},), got {shape}",
            "pass the class indices of the batch, e.g. torch.tensor([0, 1, ...])",
        )
    return y.to(device=x.device, dtype=torch.long)


def as_mask(mask: MaskLike, x: Tensor) -> Tensor:
    """``mask`` as a float ``(B | 1, 1, H, W)`` tensor on ``x``'s device and dtype, checked against ``x``."""
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, Tensor):
        raise InputError(
            f"irrelevant_mask must be a tensor or array, got {type(mask).__name__}", "pass an (H, W) bool mask"
        )
    b, _, h, w = x.shape
    m = mask.detach()
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != (h, w) or m.shape[0] not in (1, b):
        raise InputError(
            f"irrelevant_mask of shape {tuple(mask.shape)} does not fit the batch {tuple(x.shape)}",
            f"pass (H, W) = ({h}, {w}), (B, H, W) or (B, 1, H, W) with B = {b}",
        )
    m = m.to(device=x.device, dtype=x.dtype)
    if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
        raise InputError("irrelevant_mask has negative or non-finite values", "pass a bool mask or weights in [0, 1]")
    return m
