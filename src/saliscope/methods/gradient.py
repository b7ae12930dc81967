"""Vanilla gradients (Simonyan et al. 2014) and gradient × input (Shrikumar et al. 2016)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ..core.cost import CostMeter
from ..core.inference_copy import net_for_run
from ..core.memory_layout import in_preferred_layout
from ..core.targets import BoundTarget
from .base import Attribution, Explainer


def input_gradients(
    net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter, fast: nn.Module | None = None
) -> tuple[Tensor, Tensor]:
    """``d score_i / d x_i`` for every sample of ``x`` ``(N, C, H, W)``, and the scores ``(N,)``.

    Uses ``torch.autograd.grad`` on the input only, so parameters' ``.grad`` is never touched. Summing
    the scores is exact because in eval mode each sample's score depends on that sample alone. ``fast``:
    ``net``'s folded inference copy (:func:`gradient_net`), the same function, to differentiate instead.
    """
    run = net if fast is None else fast
    grad, scores = in_preferred_layout(net, x, lambda xin: _input_gradients(run, xin, target, meter))
    return grad.contiguous(), scores


def gradient_net(net: nn.Module, x: Tensor, rows: int, meter: CostMeter) -> nn.Module | None:
    """The folded inference copy of ``net`` (batch norms folded into the convolutions: the same function of
    the input, so the same input gradient) for a run of ``rows`` gradient passes on inputs shaped like ``x``,
    when the run is long enough to pay for making it; else None (differentiate ``net`` itself). The choice
    depends on the run alone, never on what ran before, so an input gets the same map in any session.

    Only for methods that differentiate the output with respect to the input alone: no hook, no layer."""
    fast = net_for_run(net, x[:1].detach(), rows, meter)  # a model in training mode gets no copy: net itself
    return None if fast is net else fast


def _input_gradients(net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> tuple[Tensor, Tensor]:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = target(net(x))
        meter.forward(int(x.shape[0]))
        (grad,) = torch.autograd.grad(scores.sum(), x)
    meter.backward(int(x.shape[0]))
    return grad, scores.detach()


class Gradient(Explainer):
    """Vanilla gradient of the target score with respect to the input.

    Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", ICLR workshop 2014.
    Attributions are the signed ``(B, C, H, W)`` gradient; the paper's map is
    ``e.saliency("max-abs")``, and ``"sum-abs"`` / ``"l2"`` are the other common views.
    """

    name: ClassVar[str] = "gradient"
    # Not for subclasses that hook the model. One image is one pass, never enough to pay for the folded copy on
    # its own: a wrapper that runs many passes per image (SmoothGrad) decides and hands the copy in as ``net``.
    on_folded_copy: ClassVar[bool] = True

    def _gradients(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> tuple[Tensor, Tensor]:
        grads = torch.empty_like(x)
        scores = x.new_empty(x.shape[0])
        spans = self.chunker.spans(int(x.shape[0]), key=self.chunk_key(x), device=x.device, params=net.parameters)
        for start, stop in spans:
            rows = torch.arange(start, stop)
            grads[start:stop], scores[start:stop] = input_gradients(net, x[start:stop], target.take(rows), meter)
        return grads, scores

    def _attribute(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        grads, scores = self._gradients(net, x, target, meter)
        return Attribution(grads, scores=scores)


class GradientXInput(Gradient):
    """Gradient × input: a first-order Taylor estimate of each input's contribution.

    Shrikumar et al., "Not Just a Black Box", 2016. For a linear model ``w·x`` it is exactly ``w * x``.
    The input is the model-space (normalised) tensor, so "zero" means the normalisation's mean colour.
    """

    name: ClassVar[str] = "gradient-x-input"

    def _attribute(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        grads, scores = self._gradients(net, x, target, meter)
        return Attribution(grads * x, scores=scores)
