"""CAMs that weight channels by what the model does without gradients: Score-CAM, Ablation-CAM, Eigen-CAM.

All passes are no-grad and batched across channels (and chunked by the memory budget).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor, nn

from ...core.chunking import default_budget
from ...core.cost import CostMeter
from ...core.targets import BoundTarget
from ..memory_layout import in_preferred_layout
from .base import CAM, apply_evidence, capture, upsample


def _rows_per_pass(self: CAM, x: Tensor, row_bytes: int) -> int:
    """Rows per no-grad pass: the explainer's chunk size, or the memory budget over a row's bytes."""
    if self.chunker.chunk_size is not None:
        return self.chunker.chunk_size
    budget = self.chunker.memory_budget if self.chunker.memory_budget is not None else default_budget(x.device)
    return max(1, budget // max(row_bytes, 1))


def _score_rows(
    net: nn.Module, n_rows: int, rows_per_pass: int, build: Callable[[int, int], Tensor],
    target: BoundTarget, meter: CostMeter,
) -> Tensor:
    """Scores ``(n_rows,)`` of ``net`` on inputs ``build(start, stop)``, built and scored one pass at a time;
    ``target`` is bound to the one sample all rows are perturbed copies of."""
    scores = []
    with torch.no_grad():
        for start in range(0, n_rows, rows_per_pass):
            stop = min(n_rows, start + rows_per_pass)
            batch = build(start, stop)
            copies = _repeat(target, 0, stop - start)
            scores.append(in_preferred_layout(net, batch, lambda b: copies(net(b))).float())
            meter.forward(stop - start)
    return torch.cat(scores)


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

    def __init__(self, model: nn.Module, *, max_channels: int | None = None, **kwargs: object) -> None:
        super().__init__(model, **kwargs)  # type: ignore[arg-type]
        if max_channels is not None and max_channels < 1:
            from ...core.errors import InputError

            raise InputError(f"max_channels must be >= 1, got {max_channels}", "omit it to score every channel")
        self.max_channels = max_channels

    def params(self) -> dict[str, object]:
        return {**super().params(), "max_channels": self.max_channels}

    def channel_weights(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        raise NotImplementedError  # weights come from extra passes, see map_chunk

    def map_chunk(
        self, net: nn.Module, x: Tensor, activations: Tensor, gradients: Tensor | None, target: BoundTarget,
        meter: CostMeter,
    ) -> Tensor:
        per_pass = _rows_per_pass(self, x, 8 * x[0].numel() * x.element_size())
        maps = []
        for i in range(int(x.shape[0])):
            acts = activations[i]  # (K, h, w)
            channels = self._channels(acts)
            flat = acts[channels].flatten(1)
            live = channels[(flat.amax(1) - flat.amin(1)) > 0]
            # A constant channel masks the whole image away; all of them share one input, scored once.
            n_rows = int(live.numel()) + int(live.numel() < channels.numel())
            scores = _score_rows(net, n_rows, per_pass, _MaskedInputs(x[i], acts, live), _repeat(target, i, 1), meter)
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



class _MaskedInputs:
    """Rows ``start:stop`` of the masked inputs ``x * normalised(upsampled(A_k))`` for the live channels,
    then one all-zero-mask row; built one pass at a time so only a pass's worth of masks is ever held."""

    def __init__(self, x: Tensor, activations: Tensor, live: Tensor) -> None:
        self.x, self.activations, self.live = x, activations, live

    def __call__(self, start: int, stop: int) -> Tensor:
        size = (int(self.x.shape[-2]), int(self.x.shape[-1]))
        chosen = self.live[start:stop]
        masks = upsample(self.activations[chosen], size)[:, 0]
        low = masks.amin((1, 2), keepdim=True)
        masks = (masks - low) / (masks.amax((1, 2), keepdim=True) - low)
        if stop > self.live.numel():
            masks = torch.cat([masks, masks.new_zeros((1, *size))])
        return self.x[None] * masks[:, None]


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

    def __init__(self, model: nn.Module, **kwargs: object) -> None:
        super().__init__(model, **kwargs)  # type: ignore[arg-type]
        self._head_only: dict[tuple[object, ...], bool] = {}

    def channel_weights(self, activations: Tensor, gradients: Tensor | None) -> Tensor:
        raise NotImplementedError  # weights come from extra passes, see map_chunk

    def map_chunk(
        self, net: nn.Module, x: Tensor, activations: Tensor, gradients: Tensor | None, target: BoundTarget,
        meter: CostMeter,
    ) -> Tensor:
        grid = self.layer_grid(net, x)
        maps = []
        for i in range(int(x.shape[0])):
            one = _repeat(target, i, 1)
            with capture(net, grid.name, differentiable=False) as box, torch.no_grad():
                y = in_preferred_layout(net, x[i : i + 1], lambda b: one(net(b))).float()
                meter.forward(1)
            raw = box.output
            assert raw is not None
            k = int(activations.shape[1])
            row_bytes = 4 * raw[0].numel() * raw.element_size()
            per_pass = _rows_per_pass(self, x, row_bytes)
            dropped = self._ablated_scores(net, x[i : i + 1], raw, grid, one, k, per_pass, meter)
            weights = (y - dropped) / y.abs().clamp(min=1e-12)
            signed = (weights.to(activations.dtype)[:, None, None] * activations[i]).sum(0)
            maps.append(apply_evidence(signed, self.evidence))
        return torch.stack(maps)

    def _ablated_scores(
        self, net: nn.Module, x1: Tensor, raw: Tensor, grid: object, target: BoundTarget, k: int, per_pass: int,
        meter: CostMeter,
    ) -> Tensor:
        key = (grid, tuple(x1.shape[1:]), id(net))
        head_only = self._head_only.get(key)
        if head_only is None:
            full = self._run(net, x1, raw, grid, target, [0], meter, head_only=False)
            try:
                fast = self._run(net, x1, raw, grid, target, [0], meter, head_only=True)
                head_only = bool(torch.allclose(fast, full, rtol=1e-4, atol=1e-5))
            except RuntimeError:
                head_only = False
            self._head_only[key] = head_only
        scores = []
        for start in range(0, k, per_pass):
            channels = list(range(start, min(k, start + per_pass)))
            scores.append(self._run(net, x1, raw, grid, target, channels, meter, head_only=head_only))
        return torch.cat(scores)

    def _run(
        self, net: nn.Module, x1: Tensor, raw: Tensor, grid: object, target: BoundTarget, channels: list[int],
        meter: CostMeter, *, head_only: bool,
    ) -> Tensor:
        """Scores with each of ``channels`` zeroed at the layer; ``head_only`` feeds the image once."""
        from ..layers import LayerGrid

        assert isinstance(grid, LayerGrid)
        n = len(channels)
        ablated = raw.expand(n, *raw.shape[1:]).clone()
        _zero_channels(ablated, grid, channels)
        module = net.get_submodule(grid.name)
        handle = module.register_forward_hook(lambda _m, _a, _o: ablated)
        try:
            with torch.no_grad():
                batch = x1 if head_only else x1.expand(n, *x1.shape[1:])
                out = in_preferred_layout(net, batch, net)
                meter.forward(n)
        finally:
            handle.remove()
        rows = out.shape[0] if isinstance(out, Tensor) else n
        if rows != n:
            raise RuntimeError("the network mixed the ablated batch with the image's own batch")
        return _repeat(target, 0, n)(out).float()


def _zero_channels(ablated: Tensor, grid: object, channels: list[int]) -> None:
    from ..layers import LayerGrid

    assert isinstance(grid, LayerGrid)
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
