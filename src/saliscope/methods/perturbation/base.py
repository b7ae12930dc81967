"""What every perturbation method shares: forward-only passes, a replacement fill, seeds, several targets."""

from __future__ import annotations

import secrets
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from ...core.cost import CostMeter
from ...core.errors import InputError
from ...core.targets import BoundTarget
from ..base import Attribution, Explainer, Precision
from ._forward import Keep, ScoredChunk, scored_chunks
from .fill import Replacement, check_replacement, replacement_image


class PerturbationExplainer(Explainer):
    """Base class of the methods that only run the model forward on perturbed copies of the input.

    Subclasses implement :meth:`_perturb`, which gets every target of the call at once: each perturbed
    batch is run through the model once and scored for all targets. Nothing here touches autograd.

    Args:
        replacement: what hidden pixels become: ``"constant"`` (``value`` in model space; 0 is the mean
            colour of a normalised dataset), ``"mean"`` (each image's mean colour) or ``"blur"``.
        value: the constant for ``replacement="constant"``.
        blur_sigma: the blur's standard deviation in pixels for ``replacement="blur"``.
        progress: ``True`` shows a tqdm bar, ``False`` never; ``None`` shows one only for runs of many
            chunks on a terminal.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        replacement: Replacement = "constant",
        value: float = 0.0,
        blur_sigma: float = 10.0,
        progress: bool | None = None,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        precision: Precision = "auto",
    ) -> None:
        super().__init__(model, chunk_size=chunk_size, memory_budget=memory_budget, precision=precision)
        check_replacement(replacement, blur_sigma)
        self.replacement: Replacement = replacement
        self.value = float(value)
        self.blur_sigma = float(blur_sigma)
        self.progress = progress

    def params(self) -> dict[str, Any]:
        fill: dict[str, Any] = {"replacement": self.replacement}
        if self.replacement == "constant":
            fill["value"] = self.value
        elif self.replacement == "blur":
            fill["blur_sigma"] = self.blur_sigma
        return {**super().params(), **fill}

    def chunk_key(self, x: Tensor) -> tuple[object, ...]:
        # A forward-only row costs far less than an autograd one: it has its own measured figure.
        return ("forward", tuple(x.shape[1:]), x.dtype, x.device.type)

    @abstractmethod
    def _perturb(self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter) -> list[Attribution]:
        """One attribution ``(B, 1, H, W)`` per target, computed from forward passes only."""

    def _attribute(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        return self._attribute_many(net, x, [target], meter)[0]

    def _attribute_many(
        self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter
    ) -> list[Attribution]:
        with torch.no_grad():
            return self._perturb(net, x, targets, meter)

    def scored(
        self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter, *, n: int, keep: Keep
    ) -> Iterator[ScoredChunk]:
        """The chunks of ``n`` perturbations per image, scored for every target (see ``_forward``)."""
        fill = replacement_image(x, net, self.replacement, value=self.value, blur_sigma=self.blur_sigma)
        return scored_chunks(self, net, x, fill, targets, meter, n=n, keep=keep, progress=self.progress)

    def all_scores(
        self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter, *, n: int, keep: Keep
    ) -> Tensor:
        """``(K, B, n)``: the score of every perturbation of every image for each of the K targets."""
        scores = x.new_empty((len(targets), int(x.shape[0]), n), dtype=torch.float64)
        for chunk in self.scored(net, x, targets, meter, n=n, keep=keep):
            scores[:, chunk.sample, chunk.index] = chunk.scores.double()
        return scores


class Seeded:
    """Mixin for randomised methods: a seed given, or drawn per call and recorded in the explanation."""

    seed: int | None

    def run_seed(self) -> int:
        return self.seed if self.seed is not None else secrets.randbits(62)

    @staticmethod
    def generator(seed: int, stream: int = 0) -> torch.Generator:
        """A CPU generator for ``(seed, stream)``: the same draws on every device and in every batch."""
        return torch.Generator().manual_seed((seed * 1_000_003 + stream) % (2**63))


def check_count(name: str, value: int, minimum: int = 1, example: int = 1000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}", f"use e.g. {name}={example}")
    return value
