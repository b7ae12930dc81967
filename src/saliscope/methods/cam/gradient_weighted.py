"""CAMs whose channel weights come from the gradient of the score at the layer.

Each differs from Grad-CAM in one step, :meth:`~saliscope.methods.cam.base.CAM.channel_weights`.
``A`` are the activations ``(N, K, h, w)``, ``G = d score / d A``.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from .base import CAM

_EPS = 1e-7


class GradCAM(CAM):
    """Grad-CAM: weights are the spatially averaged gradients, ``w_k = mean_ij G_kij``; map
    ``ReLU(sum_k w_k A_k)``, bilinearly upsampled to the input.

    Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV 2017.
    """

    name: ClassVar[str] = "gradcam"

    def channel_weights(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        assert gradients is not None
        return gradients.mean((2, 3), keepdim=True)


class GradCAMPlusPlus(CAM):
    """Grad-CAM++: positive gradients weighted per element by
    ``alpha = G² / (2 G² + sum_ij A · G³)`` (the closed form for an exponential score), summed over space.

    Chattopadhyay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional Networks",
    WACV 2018.
    """

    name: ClassVar[str] = "gradcam-plus-plus"

    def channel_weights(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        assert gradients is not None
        g2 = gradients.pow(2)
        g3 = g2 * gradients
        denominator = 2 * g2 + activations.sum((2, 3), keepdim=True) * g3
        alpha = g2 / denominator.where(denominator != 0, denominator.new_ones(()))
        alpha = alpha.where(gradients != 0, alpha.new_zeros(()))
        return (alpha * gradients.clamp(min=0)).sum((2, 3), keepdim=True)


class HiResCAM(CAM):
    """HiResCAM: the gradient times the activation element by element, summed over channels (no spatial
    averaging), so the map provably shows the locations the score used.

    Draelos & Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of convolutional neural
    networks", 2020.
    """

    name: ClassVar[str] = "hirescam"

    def channel_weights(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        assert gradients is not None
        return gradients


class XGradCAM(CAM):
    """XGrad-CAM: ``w_k = sum_ij G_kij A_kij / sum_ij A_kij`` (activation-normalised gradients).

    Fu et al., "Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of CNNs", BMVC 2020.
    """

    name: ClassVar[str] = "xgradcam"

    def channel_weights(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        assert gradients is not None
        total = activations.sum((2, 3), keepdim=True)
        return (gradients * activations).sum((2, 3), keepdim=True) / (total + _EPS)


class LayerCAM(CAM):
    """LayerCAM: positive gradients as per-element weights, ``ReLU(G) · A``; works in shallow layers too.

    Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for Localization", IEEE TIP 2021.
    """

    name: ClassVar[str] = "layercam"

    def channel_weights(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        assert gradients is not None
        return gradients.clamp(min=0)
