"""What every class activation map shares: read one layer, weight its channels, upsample.

A CAM is ``evidence(sum_k w_k * A_k)`` upsampled to the input, where ``A`` are the layer's activations
``(N, K, h, w)`` and ``w`` the channel weights (or, for HiResCAM / LayerCAM, one weight per element).
Subclasses provide one step: :meth:`CAM.channel_weights`.

The layer's output is captured by a forward hook that hands the rest of the network a detached copy that
requires grad. So the backward pass of a gradient CAM stops at the layer: nothing below it is
differentiated, and no parameter gradient is ever formed (parameters are frozen and ``.grad`` untouched).
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.cost import CostMeter
from ...core.errors import InputError, MethodError
from ...core.memory_layout import in_preferred_layout
from ...core.model_state import hooks
from ...core.targets import BoundTarget
from ...core.views import FlatMapWarning
from .. import detector_layers
from ..base import Attribution, Explainer, Precision
from ..detector_layers import LayerPart
from ..layers import LayerGrid, resolve_layer

CamEvidence = Literal["positive", "negative", "signed"]
_EVIDENCE: tuple[str, ...] = ("positive", "negative", "signed")


@dataclass
class Captured:
    """The last call's output of the hooked layer, as given to the rest of the network, and how many
    times the layer was called (a re-used module is called more than once per forward pass)."""

    output: Tensor | None = None
    calls: int = 0


@dataclass(frozen=True)
class LayerPass:
    """What one forward pass through a chunk tells a CAM about one target."""

    raw: Tensor  # the layer's (last) output as the network produced it, e.g. (N, T, D) tokens
    activations: Tensor  # (N, K, h, w)
    gradients: Tensor | None  # d score / d activations, (N, K, h, w); None for gradient-free CAMs
    scores: Tensor  # (N,)
    calls: int  # times the layer ran in the pass
    grid: LayerGrid | None = None  # the layer read


@contextmanager
def capture(net: nn.Module, layer: str, *, differentiable: bool) -> Iterator[Captured]:
    """Hook ``layer`` for the block; its (last call's) output lands in the returned :class:`Captured`.

    ``differentiable``: the rest of the network gets a fresh leaf that requires grad (a clone of it, so
    in-place activations after the layer stay legal), and gradients can be taken with respect to it.
    """
    box = Captured()

    def keep(_module: nn.Module, _args: Any, output: Tensor) -> Tensor | None:
        box.calls += 1
        if not differentiable:
            box.output = output.detach()
            return None
        leaf = output.detach().requires_grad_(True)
        box.output = leaf
        return leaf.clone()

    with hooks([net.get_submodule(layer)], keep):
        yield box


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """``(N, h, w)`` layer-resolution maps → ``(N, 1, H, W)`` by bilinear interpolation (as in Grad-CAM)."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)


def apply_evidence(signed: Tensor, evidence: str) -> Tensor:
    """``positive``: ReLU (the papers' maps); ``negative``: only regions against the class, kept negative;
    ``signed``: the weighted sum as it is."""
    if evidence == "positive":
        return signed.clamp(min=0)
    if evidence == "negative":
        return signed.clamp(max=0)
    return signed


class CAM(Explainer):
    """Base class of the CAM family.

    Args:
        model: the model; see :class:`~saliscope.methods.base.Explainer`.
        layer: the layer to read: a name from ``model.named_modules()`` (``"layer4"``), the module, or None
            for the automatic choice (see :mod:`saliscope.methods.layers`).
        evidence: ``"positive"`` (the papers' ReLU map), ``"signed"`` (no ReLU: negative values mark regions
            that lower the score) or ``"negative"`` (only those regions, as negative values; for gradient
            CAMs the counterfactual map of Selvaraju et al. 2017, computed from negated gradients).

    Attributions are ``(B, 1, H, W)``; ``extras["layer_map"]`` holds the map at the layer's resolution.
    """

    #: Whether the map needs the gradient of the score with respect to the layer.
    uses_gradients: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        *,
        layer: str | nn.Module | None = None,
        evidence: CamEvidence = "positive",
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        precision: Precision = "auto",
    ) -> None:
        super().__init__(model, chunk_size=chunk_size, memory_budget=memory_budget, precision=precision)
        if evidence not in _EVIDENCE:
            raise InputError(f"unknown evidence {evidence!r}", f"use one of {', '.join(_EVIDENCE)}")
        if layer is not None and not isinstance(layer, (str, nn.Module)):
            raise InputError(
                f"layer must be a name or a module, not {type(layer).__name__}", "pass e.g. layer='layer4'"
            )
        self.layer = layer
        self.evidence: CamEvidence = evidence
        self._grids: dict[tuple[object, ...], LayerGrid | detector_layers.DenseLayers] = {}

    def params(self) -> dict[str, Any]:
        layer = self.layer if isinstance(self.layer, str) or self.layer is None else type(self.layer).__name__
        return {**super().params(), "layer": layer, "evidence": self.evidence}

    # -- the one step subclasses provide -----------------------------------------------------------
    @abstractmethod
    def channel_weights(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        """Weights broadcastable to ``activations`` ``(N, K, h, w)``: ``(N, K, 1, 1)`` or per element."""

    # -- shared machinery --------------------------------------------------------------------------
    def layer_grid(
        self, net: nn.Module, x: Tensor, meter: CostMeter | None = None, targets: list[BoundTarget] | None = None
    ) -> LayerGrid:
        """The resolved layer for inputs shaped like ``x`` (one probe forward of one sample, then cached).

        For a detector or segmenter the layer is on the image path, and the automatic one is the feature level
        ``targets``' boxes need (see :mod:`saliscope.methods.detector_layers`)."""
        return self.layer_plan(net, x, targets or [], meter)[0].grid

    def layer_plan(
        self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter | None = None
    ) -> list[LayerPart]:
        """Which layer serves which targets and rows: one part, except for detector boxes needing different
        feature levels."""
        layer = self.layer
        if isinstance(layer, nn.Module):
            names = {id(m): n for n, m in self.model.named_modules()}
            layer = names.get(id(layer), layer)  # the converted copy has its own modules, same names
        key = (layer if isinstance(layer, str) or layer is None else id(layer), tuple(x.shape[1:]), id(net))
        if key not in self._grids:
            dense = detector_layers.probe(net, x)
            if dense is None:
                self._grids[key] = resolve_layer(net, x, layer)
            elif isinstance(layer, str):
                self._grids[key] = dense.named(layer)
            elif layer is None:
                self._grids[key] = dense
            else:
                raise MethodError(
                    f"the layer given ({type(layer).__name__}) is not a submodule of this model",
                    "pass one of the model's own modules, or its name",
                )
            if meter is not None:
                meter.forward(1)
                if layer is None and dense is None:
                    meter.backward(1)  # the automatic choice probes the gradient too
        found = self._grids[key]
        if isinstance(found, detector_layers.DenseLayers):
            return found.plan(targets)
        return [LayerPart(found, tuple(range(len(targets))))]

    def chunk_key(self, x: Tensor) -> tuple[object, ...]:
        return ("cam", self.uses_gradients, str(self.layer), tuple(x.shape[1:]), x.dtype, x.device.type)

    def layer_pass(
        self, net: nn.Module, x: Tensor, targets: list[BoundTarget], grid: LayerGrid, meter: CostMeter
    ) -> list[LayerPass]:
        """One forward pass of ``x``, read for every target (one backward each for gradient CAMs)."""

        def run(xin: Tensor) -> list[LayerPass]:
            n = int(xin.shape[0])
            with capture(net, grid.name, differentiable=self.uses_gradients) as box:
                with torch.set_grad_enabled(self.uses_gradients):
                    output = net(xin)
                    meter.forward(n)
                    scores = [t(output) for t in targets]
                if box.output is None:
                    raise RuntimeError(f"layer {grid.name!r} was not called in the forward pass")
                if int(box.output.shape[0]) != n:
                    rows, images = int(box.output.shape[0]), f"{n} image{'s' * (n != 1)}"
                    raise MethodError(
                        f"layer {grid.name!r} returned {rows} rows for {images}: it runs on region proposals or"
                        " detections, not on whole images",
                        "read a layer on the image path (the backbone), e.g. layer=..., or a gradient method",
                        "read a layer on the image path (the backbone) with --layer, or use a gradient method",
                    )
                grads: list[Tensor | None] = [None] * len(scores)
                if self.uses_gradients:
                    for k, s in enumerate(scores):  # the graph is kept for every target but the last
                        (g,) = torch.autograd.grad(s.sum(), box.output, retain_graph=k < len(scores) - 1)
                        meter.backward(n)
                        grads[k] = grid.to_maps(g)
            raw = box.output.detach()
            acts = grid.to_maps(raw)
            return [LayerPass(raw, acts, g, s.detach(), box.calls, grid) for g, s in zip(grads, scores, strict=True)]

        return in_preferred_layout(net, x, run)

    def combine(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        """The map ``(N, h, w)`` at the layer's resolution, with :attr:`evidence` applied."""
        if self.evidence == "negative" and gradients is not None:
            # Counterfactual: weights from the negated gradient, i.e. what lowers the score.
            counter = (self.channel_weights(activations, -gradients) * activations).sum(1)
            return -counter.clamp(min=0)
        signed = (self.channel_weights(activations, gradients) * activations).sum(1)
        return apply_evidence(signed, self.evidence)

    def map_chunk(self, net: nn.Module, x: Tensor, layer: LayerPass, target: BoundTarget, meter: CostMeter) -> Tensor:
        """One chunk's maps ``(N, h, w)``; perturbation CAMs override this to run their extra passes."""
        return self.combine(layer.activations, layer.gradients)

    def _attribute(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        return self._attribute_many(net, x, [target], meter)[0]

    def _warn_if_only_against(self, maps: list[Tensor], targets: list[BoundTarget]) -> None:
        """A positive map that is zero everywhere: the ReLU removed all the layer held, which was evidence
        against the class (or nothing). Say so, and how to see it."""
        for layer_maps, target in zip(maps, targets, strict=True):
            empty = (layer_maps.flatten(1).amax(1) <= 0).nonzero().flatten().tolist()
            if not empty:
                continue
            classes = getattr(target, "classes", None)
            which = "" if classes is None else f" (class {sorted({int(classes[i]) for i in empty})})"
            warnings.warn(
                FlatMapWarning(
                    f"the {self.name} map of image(s) {empty}{which} is zero everywhere: the layer holds no evidence "
                    "for the class, only against it, and the ReLU of evidence='positive' removed that — see it with "
                    "evidence='negative' or evidence='signed' (on the command line: --evidence negative or "
                    "--evidence signed)"
                ),
                stacklevel=4,
            )

    def _attribute_many(
        self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter
    ) -> list[Attribution]:
        """Maps for every target, chunk by chunk; one forward pass per chunk serves all of them."""
        parts = self.layer_plan(net, x, targets, meter)
        if len(parts) == 1 and parts[0].rows is None:
            return self._on_layer(net, x, targets, parts[0].grid, meter)
        # Detector boxes needing different feature levels: each target's rows, level by level.
        pieces: list[list[tuple[Tensor, Attribution]]] = [[] for _ in targets]
        for part in parts:
            assert part.rows is not None
            (k,) = part.targets
            (done,) = self._on_layer(net, x[part.rows.to(x.device)], [targets[k].take(part.rows)], part.grid, meter)
            pieces[k].append((part.rows, done))
        return [detector_layers.join_rows(p, int(x.shape[0])) for p in pieces]

    def _on_layer(
        self, net: nn.Module, x: Tensor, targets: list[BoundTarget], grid: LayerGrid, meter: CostMeter
    ) -> list[Attribution]:
        maps: list[list[Tensor]] = [[] for _ in targets]
        scores: list[list[Tensor]] = [[] for _ in targets]
        spans = self.chunker.spans(
            int(x.shape[0]),
            key=self.chunk_key(x),
            device=x.device,
            params=net.parameters,
            forward_only=not self.uses_gradients,
        )
        chunks = []
        for start, stop in spans:
            parts = [t.take(torch.arange(start, stop)) for t in targets]
            chunks.append((start, stop, parts, self.layer_pass(net, x[start:stop], parts, grid, meter)))
        # Maps are made after the chunked passes, not inside them: a perturbation CAM's extra passes must not
        # run inside the first span, where the chunker is still measuring what one row of *this* pass costs.
        for start, stop, parts, passes in chunks:
            for k, (part, layer) in enumerate(zip(parts, passes, strict=True)):
                maps[k].append(self.map_chunk(net, x[start:stop], layer, part, meter))
                scores[k].append(layer.scores)
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if self.evidence == "positive":
            self._warn_if_only_against([torch.cat(m) for m in maps], targets)
        return [
            Attribution(
                upsample(torch.cat(m), size),
                scores=torch.cat(sc),
                extras={"layer_map": torch.cat(m)},
                params={"layer": grid.name},
            )
            for m, sc in zip(maps, scores, strict=True)
        ]
