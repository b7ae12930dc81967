"""CAMs that weight channels by what the model does without gradients: Score-CAM, Ablation-CAM, Eigen-CAM.

All passes are no-grad and batched across channels, chunked by the memory budget with the forward-only
probe (``Chunker.spans(..., forward_only=True)``); Score-CAM's masked passes run through the same loop as
the perturbation methods (``perturbation._forward.scored_chunks``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...core.chunking import CreatedBytes
from ...core.cost import CostMeter
from ...core.errors import InputError
from ...core.memory_layout import in_preferred_layout
from ...core.model_state import hooks
from ...core.targets import BoundTarget
from ..layers import LayerGrid
from ..perturbation._forward import scored_chunks
from .base import CAM, LayerPass, apply_evidence, upsample


class ScoreCAM(CAM):
    """Score-CAM: each channel, upsampled and min-max normalised to [0, 1], masks the input; the channel's
    weight is the softmax over channels of the target score of its masked input. No gradients.

    Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
    CVPR workshops 2020. Costs one forward pass per channel and image (batched). Channels that are constant
    over the image give the same (all-zero) mask: that input is scored once and shared.

    ``max_channels``: score only the k channels with the largest mean activation (others get weight 0).
    """

    name: ClassVar[str] = "scorecam"
    uses_gradients: ClassVar[bool] = False

    def __init__(self, model: nn.Module, *, max_channels: int | None = None, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        if max_channels is not None and max_channels < 1:
            raise InputError(f"max_channels must be >= 1, got {max_channels}", "omit it to score every channel")
        self.max_channels = max_channels

    def params(self) -> dict[str, Any]:
        return {**super().params(), "max_channels": self.max_channels}

    def channel_weights(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        raise NotImplementedError  # weights come from extra passes, see map_chunk

    def map_chunk(self, net: nn.Module, x: Tensor, layer: LayerPass, target: BoundTarget, meter: CostMeter) -> Tensor:
        maps = []
        for i in range(int(x.shape[0])):
            acts = layer.activations[i]  # (K, h, w)
            channels = self._channels(acts)
            flat = acts[channels].flatten(1)
            live = channels[(flat.amax(1) - flat.amin(1)) > 0]
            # A constant channel masks the whole image away; all of them share one input, scored once.
            n_rows = int(live.numel()) + int(live.numel() < channels.numel())
            xi = x[i : i + 1]
            scores = torch.cat(
                [
                    chunk.scores[0].float()
                    for chunk in scored_chunks(
                        self,
                        net,
                        xi,
                        torch.zeros_like(xi),
                        [_repeat(target, i, 1)],
                        meter,
                        n=n_rows,
                        keep=_ChannelMasks(acts, live, xi.shape[-2:]),
                    )
                ]
            )
            channel_scores = scores[-1].expand(acts.shape[0]).clone()
            channel_scores[live] = scores[: live.numel()]
            weights = torch.zeros_like(channel_scores)
            weights[channels] = torch.softmax(channel_scores[channels], 0)
            maps.append(apply_evidence((weights.to(acts.dtype)[:, None, None] * acts).sum(0), self.evidence))
        return torch.stack(maps)

    def _channels(self, acts: Tensor) -> Tensor:
        k = int(acts.shape[0])
        if self.max_channels is None or self.max_channels >= k:
            return torch.arange(k, device=acts.device)
        return acts.mean((1, 2)).topk(self.max_channels).indices.sort().values


class _ChannelMasks:
    """Keep masks ``normalised(upsampled(A_k))`` for rows of the live channels, and an all-zero mask for the
    row after them; built per chunk, so only a chunk's worth of masks is ever held."""

    def __init__(self, activations: Tensor, live: Tensor, size: Any) -> None:
        self.activations, self.live, self.size = activations, live, (int(size[0]), int(size[1]))

    def __call__(self, sample: Tensor, index: Tensor) -> Tensor:
        chosen = index.clamp(max=self.live.numel() - 1) if self.live.numel() else index * 0
        masks = upsample(
            self.activations[self.live[chosen]]
            if self.live.numel()
            else self.activations[:1].expand(len(index), -1, -1),
            self.size,
        )
        low = masks.amin((2, 3), keepdim=True)
        masks = (masks - low) / (masks.amax((2, 3), keepdim=True) - low).clamp(min=torch.finfo(masks.dtype).tiny)
        return masks * (index < self.live.numel()).to(masks.dtype).view(-1, 1, 1, 1)


def _repeat(target: BoundTarget, row: int, n: int) -> BoundTarget:
    """``target`` of sample ``row``, for ``n`` perturbed copies of it."""
    return target.take(torch.full((n,), row, dtype=torch.long))


class AblationCAM(CAM):
    """Ablation-CAM: a channel's weight is the relative drop of the score when that channel is zeroed,
    ``w_k = (y - y_k) / |y|``. No gradients.

    Desai & Ramaswamy, "Ablation-CAM: Visual Explanations for Deep Convolutional Network via
    Gradient-free Localization", WACV 2020. (The paper divides by ``y``; dividing by ``|y|`` keeps the map's
    sign when the class score is a negative logit.)

    Only the part of the network after the layer needs re-running: the image goes through the layers below
    once, and the hook hands the rest of the network all ablated copies of the activations as one batch.
    Whether that is exact for a model is checked once against a full re-run of one ablation (models that
    mix the layer's output with earlier tensors in a batch-dependent way fall back to full re-runs).
    """

    name: ClassVar[str] = "ablationcam"
    uses_gradients: ClassVar[bool] = False

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._head_only: dict[tuple[object, ...], bool] = {}

    def channel_weights(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        raise NotImplementedError  # weights come from extra passes, see map_chunk

    def map_chunk(self, net: nn.Module, x: Tensor, layer: LayerPass, target: BoundTarget, meter: CostMeter) -> Tensor:
        grid = layer.grid if layer.grid is not None else self.layer_grid(net, x, targets=[target])
        maps = []
        for i in range(int(x.shape[0])):
            one = _repeat(target, i, 1)
            dropped = self._ablated_scores(net, x[i : i + 1], layer.raw[i : i + 1], grid, one, layer.calls, meter)
            y = layer.scores[i].float()
            weights = (y - dropped) / y.abs().clamp(min=1e-12)
            signed = (weights.to(layer.activations.dtype)[:, None, None] * layer.activations[i]).sum(0)
            maps.append(apply_evidence(signed, self.evidence))
        return torch.stack(maps)

    def _ablated_scores(
        self,
        net: nn.Module,
        x1: Tensor,
        raw: Tensor,
        grid: LayerGrid,
        target: BoundTarget,
        calls: int,
        meter: CostMeter,
    ) -> Tensor:
        """Scores ``(K,)`` with each channel zeroed in turn, chunked by the forward-only memory probe."""
        key = (grid, tuple(x1.shape[1:]), id(net))
        head_only = self._head_only.get(key)
        k = int(grid.to_maps(raw).shape[1])
        if head_only is None:
            full = self._run(net, x1, raw, grid, target, [0], calls, meter, head_only=False)
            try:
                fast = self._run(net, x1, raw, grid, target, [0], calls, meter, head_only=True)
                head_only = bool(torch.allclose(fast, full, rtol=1e-4, atol=1e-5))
            except RuntimeError:
                head_only = False
            self._head_only[key] = head_only
        chunk_key = ("ablation", grid.name, head_only, tuple(x1.shape[1:]), x1.dtype, x1.device.type)
        if head_only and k > 1 and self.chunker.chunk_size is None and not self.chunker.knows(chunk_key):
            # A head-only pass runs the layers below once whatever its rows; only what comes after the layer
            # (and the ablated copy) scales with them: that is a row's cost.
            self.chunker.record(chunk_key, self._head_row_bytes(net, x1, raw, grid, target, calls, meter))
        spans = self.chunker.spans(k, key=chunk_key, device=x1.device, params=net.parameters, forward_only=True)
        return torch.cat(
            [
                self._run(net, x1, raw, grid, target, list(range(start, stop)), calls, meter, head_only=head_only)
                for start, stop in spans
            ]
        )

    def _head_row_bytes(
        self,
        net: nn.Module,
        x1: Tensor,
        raw: Tensor,
        grid: LayerGrid,
        target: BoundTarget,
        calls: int,
        meter: CostMeter,
    ) -> int:
        """Bytes one ablated row costs: its copy of the layer's output, and what the layers after it create."""
        seen, below = [0], [0]
        with CreatedBytes({p.data_ptr() for p in net.parameters()}) as created:

            def mark(_module: nn.Module, _args: Any, _output: Tensor) -> None:
                seen[0] += 1
                if seen[0] == calls:
                    below[0] = created.total

            with hooks([net.get_submodule(grid.name)], mark):
                self._run(net, x1, raw, grid, target, [0], calls, meter, head_only=True)
        return created.total - below[0] + raw[0].numel() * raw.element_size()

    def _run(
        self,
        net: nn.Module,
        x1: Tensor,
        raw: Tensor,
        grid: LayerGrid,
        target: BoundTarget,
        channels: list[int],
        calls: int,
        meter: CostMeter,
        *,
        head_only: bool,
    ) -> Tensor:
        """Scores with each of ``channels`` zeroed at the layer's last call; ``head_only`` feeds the image once."""
        n = len(channels)
        ablated = raw.expand(n, *raw.shape[1:]).clone()
        _zero_channels(ablated, grid, channels)
        seen = [0]

        def replace(_module: nn.Module, _args: Any, _output: Tensor) -> Tensor | None:
            seen[0] += 1
            return ablated if seen[0] == calls else None  # earlier calls of a re-used module run on the image alone

        with hooks([net.get_submodule(grid.name)], replace), torch.no_grad():
            batch = x1 if head_only else x1.expand(n, *x1.shape[1:])
            out = in_preferred_layout(net, batch, net)
            meter.forward(n)
        if head_only and isinstance(out, list):
            # A detector returns one result per image it was given, whatever the batch of the ablated layer.
            raise RuntimeError("the model returns one result per input image, not one per ablated copy")
        rows = out.shape[0] if isinstance(out, Tensor) else n
        if rows != n:
            raise RuntimeError("the network mixed the ablated batch with the image's own batch")
        return _repeat(target, 0, n)(out).float()


def _zero_channels(ablated: Tensor, grid: LayerGrid, channels: list[int]) -> None:
    rows = torch.arange(len(channels))
    idx = torch.tensor(channels)
    if grid.layout == "nchw":
        ablated[rows, idx] = 0
    elif grid.layout == "nhwc":
        ablated[rows, :, :, idx] = 0
    else:
        ablated[rows, grid.prefix_tokens :, idx] = 0


class EigenCAM(CAM):
    """Eigen-CAM: the activations projected on their first principal component (class-agnostic; no
    gradients, no target needed). The component's sign is chosen so that the map agrees with the summed
    activations (an SVD's sign is arbitrary).

    Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components", IJCNN 2020.
    """

    name: ClassVar[str] = "eigencam"
    uses_gradients: ClassVar[bool] = False

    def channel_weights(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        raise NotImplementedError  # a projection, see combine

    def combine(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        n, k, h, w = activations.shape
        m = activations.reshape(n, k, h * w).transpose(1, 2)  # (N, hw, K)
        m = m - m.mean(1, keepdim=True)
        _, _, vh = torch.linalg.svd(m, full_matrices=False)
        projection = (m @ vh[:, 0, :, None]).squeeze(-1)  # (N, hw)
        summed = activations.sum(1).reshape(n, h * w)
        agree = ((projection - projection.mean(1, keepdim=True)) * (summed - summed.mean(1, keepdim=True))).sum(1)
        projection = projection * torch.where(agree < 0, -1.0, 1.0).to(projection.dtype)[:, None]
        return apply_evidence(projection.reshape(n, h, w), self.evidence)
