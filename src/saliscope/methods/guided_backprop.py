"""Guided backpropagation (Springenberg et al. 2015)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, autograd, nn

from ..core.cost import CostMeter
from ..core.errors import MethodError
from ..core.model_state import hooks
from ..core.targets import BoundTarget
from .base import Attribution
from .gradient import Gradient

#: Activations whose backward pass guided backprop rectifies.
RECTIFIERS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU)


class _PositiveGradient(autograd.Function):
    """Identity going forward; lets only positive gradient through going back."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.clamp(min=0)


def _guide(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor:
    # Placed after the activation, so the activation's own backward (the mask where its input was
    # positive) composes with this rectification: exactly the guided-backprop rule. A forward hook sees
    # every call of a re-used module and the output of an in-place one.
    return _PositiveGradient.apply(output)


class GuidedBackprop(Gradient):
    """Guided backpropagation: the gradient with negative gradients zeroed at every rectifier.

    Springenberg et al., "Striving for Simplicity: The All Convolutional Net", ICLR workshop 2015.
    Works with in-place and re-used activation modules. Activations called as functions
    (``F.relu`` inside ``forward``) cannot be reached: a model with none of :data:`RECTIFIERS` as
    modules raises :class:`MethodError`. Note (Adebayo et al. 2018): the map depends little on the
    model's weights — check it with the sanity metrics before trusting it.
    """

    name: ClassVar[str] = "guided-backprop"
    on_folded_copy: ClassVar[bool] = False  # its hooks are on the model's own rectifiers

    def _attribute(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        rectifiers = [m for m in net.modules() if isinstance(m, RECTIFIERS)]
        if not rectifiers:
            raise MethodError(
                "guided backprop found no activation modules (ReLU, ReLU6, LeakyReLU, ELU) in this model",
                "use a model whose activations are nn.Module layers, or another method such as 'gradient'",
            )
        with hooks(rectifiers, _guide):
            grads, scores = self._gradients(net, x, target, meter)
        return Attribution(grads, scores=scores)
