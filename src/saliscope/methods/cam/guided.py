"""Guided Grad-CAM: guided backpropagation's fine detail, masked by Grad-CAM's class-discriminative region."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor, nn

from ...core.cost import CostMeter
from ...core.targets import BoundTarget
from ..base import Attribution
from ..guided_backprop import GuidedBackprop
from .gradient_weighted import GradCAM


class GuidedGradCAM(GradCAM):
    """Guided backprop ``(B, C, H, W)`` times the upsampled Grad-CAM map ``(B, 1, H, W)``.

    Selvaraju et al., "Grad-CAM", ICCV 2017, section 3.1. Inherits guided backprop's weakness (Adebayo et
    al. 2018: it barely depends on the upper layers' weights); the Grad-CAM factor supplies the class.
    """

    name: ClassVar[str] = "guided-gradcam"

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._guided = GuidedBackprop(
            model,
            chunk_size=self.chunker.chunk_size,
            memory_budget=self.chunker.memory_budget,
            precision=self.precision,
        )

    def _attribute_many(
        self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter
    ) -> list[Attribution]:
        cams = super()._attribute_many(net, x, targets, meter)
        out = []
        for cam, target in zip(cams, targets, strict=True):
            guided = self._guided._attribute(net, x, target, meter)
            out.append(
                Attribution(
                    guided.attributions * cam.attributions,
                    scores=cam.scores,
                    extras={**cam.extras, "gradcam": cam.attributions},
                    params=cam.params,
                )
            )
        return out
