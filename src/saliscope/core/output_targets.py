"""Targets for outputs that are not one row of class scores per image.

- :class:`OutputTarget` picks one entry of a dict / tuple / list output, then applies any other target.
- :class:`SegmentationTarget`: the mean score of one class over a region of a segmentation output
  ``(B, K, h, w)`` (torchvision's ``deeplabv3`` returns ``{"out": ..., "aux": ...}``; ``"out"`` is used).
- :class:`BoxTarget` / :class:`DetectionTarget`: a detector's confidence in a box or in one of its own
  detections (defined in :mod:`.detection_targets`, re-exported here).
- :class:`EmbeddingTarget`: similarity of the output embedding to a reference embedding.

Each maps a model output to one score per sample and follows the rows of an expanded batch (``take``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .detection_targets import BoundDetections, BoxTarget, DetectionTarget, box_iou
from .errors import ModelOutputError, TargetError
from .targets import BoundTarget, Key, PredictedClass, Target

__all__ = [
    "BoundDetections",
    "BoxTarget",
    "DetectionTarget",
    "EmbeddingTarget",
    "OutputTarget",
    "SegmentationTarget",
    "box_iou",
    "pick",
]


def pick(output: object, key: Key) -> object:
    """``output[key]`` for a dict / tuple / list output, with a message naming what is there."""
    if isinstance(output, Mapping):
        if key not in output:
            raise ModelOutputError(
                f"the model's output has no entry {key!r}", f"use one of its keys: {', '.join(map(repr, output))}"
            )
        return output[key]
    if isinstance(output, (tuple, list)) and isinstance(key, int):
        if not -len(output) <= key < len(output):
            raise ModelOutputError(
                f"the model's output has {len(output)} entries, no index {key}", f"use 0..{len(output) - 1}"
            )
        return output[key]
    raise ModelOutputError(
        f"cannot take entry {key!r} of a {type(output).__name__} output",
        "use OutputTarget only for dict or tuple outputs",
    )


@dataclass(frozen=True)
class OutputTarget(Target):
    """Explain ``inner`` on one entry of a dict / tuple output: ``OutputTarget("logits", ClassTarget(3))``."""

    key: Key
    inner: Target = field(default_factory=PredictedClass)

    @property
    def needs_output(self) -> bool:
        return self.inner.needs_output

    def bind(self, output: object, batch_size: int) -> BoundTarget:
        picked = None if output is None else pick(output, self.key)
        return _BoundOutput(self.key, self.inner.bind(picked, batch_size))  # type: ignore[arg-type]


@dataclass(frozen=True)
class _BoundOutput(BoundTarget):
    key: Key
    inner: BoundTarget

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    def take(self, rows: Tensor) -> BoundTarget:
        return _BoundOutput(self.key, self.inner.take(rows))

    def output_entry(self, output: object) -> Key | None:
        return self.key

    def __call__(self, output: object) -> Tensor:
        return self.inner(pick(output, self.key))


def _rows(value: Tensor, batch_size: int, what: str) -> Tensor:
    """``value`` with a leading batch dimension of ``batch_size`` (one shared value is repeated)."""
    if value.shape[0] == batch_size and value.ndim >= 2:
        return value
    raise TargetError(
        f"{what} has shape {tuple(value.shape)}, not one per image of {batch_size}", f"give one {what} or one per image"
    )


# -- segmentation --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentationTarget(Target):
    """Mean score of class ``index`` over a region of a segmentation output ``(B, K, h, w)``.

    ``mask``: ``(h, w)`` or ``(B, h, w)`` (bool or weights), resized to the output's size by nearest
    neighbour; ``None`` uses the pixels where the model predicts ``index`` on the clean input.
    ``key`` picks the entry of a dict output (default ``"out"``, torchvision's segmentation models).
    """

    index: int
    mask: Tensor | None = None
    key: Key | None = None

    @property
    def needs_output(self) -> bool:
        return self.mask is None

    def bind(self, output: object, batch_size: int) -> BoundTarget:
        if self.mask is not None:
            mask = self.mask.detach().float()
            mask = mask.expand(batch_size, *mask.shape[-2:]) if mask.ndim == 2 else _rows(mask, batch_size, "mask")
            return _BoundSegment(self.index, mask.cpu(), self.key)
        maps = _segmentation_scores(output, self.key)
        region = (maps.detach().argmax(1) == self.index).float().cpu()
        empty = [i for i in range(batch_size) if not bool(region[i].any())]
        if empty:
            raise TargetError(
                f"the model predicts class {self.index} nowhere in image {empty[0]}",
                "pass mask= with the region to explain, or pick a class the model finds in the image",
            )
        return _BoundSegment(self.index, region, self.key)


@dataclass(frozen=True)
class _BoundSegment(BoundTarget):
    index: int
    mask: Tensor  # (B, h, w) float, CPU
    key: Key | None

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    def take(self, rows: Tensor) -> BoundTarget:
        return _BoundSegment(self.index, self.mask[rows.cpu()], self.key)

    def output_entry(self, output: object) -> Key | None:
        return ("out" if self.key is None else self.key) if isinstance(output, Mapping) else self.key

    def __call__(self, output: object) -> Tensor:
        maps = _segmentation_scores(output, self.key)
        if not 0 <= self.index < maps.shape[1]:
            raise TargetError(
                f"class index {self.index} is out of range:"
                f" the model has {maps.shape[1]} classes (0..{maps.shape[1] - 1})",
                "pick a class index below the number of classes",
            )
        mask = self.mask.to(maps.device, torch.float32)
        if mask.shape[-2:] != maps.shape[-2:]:
            mask = F.interpolate(mask[:, None], size=maps.shape[-2:], mode="nearest")[:, 0]
        picked = maps[:, self.index].float()
        return (picked * mask).sum((1, 2)) / mask.sum((1, 2)).clamp(min=1e-12)


def _segmentation_scores(output: object, key: Key | None) -> Tensor:
    if isinstance(output, Mapping):
        output = pick(output, key if key is not None else "out")
    elif key is not None:
        output = pick(output, key)
    if not isinstance(output, Tensor) or output.ndim != 4:
        shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
        raise ModelOutputError(
            f"a segmentation target needs a (batch, classes, h, w) output, the model returned {shape}",
            "use SegmentationTarget with a segmentation model, or key= to pick its score map",
        )
    return output


# -- embeddings ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbeddingTarget(Target):
    """Similarity of the model's output embedding ``(B, D)`` to ``reference`` ``(D,)`` or ``(B, D)``:
    which parts of the image make it look like the reference (image retrieval, face / re-id models)."""

    reference: Tensor
    metric: Literal["cosine", "dot"] = "cosine"

    def bind(self, output: object, batch_size: int) -> BoundTarget:
        if self.metric not in ("cosine", "dot"):
            raise TargetError(f"unknown similarity {self.metric!r}", "use 'cosine' or 'dot'")
        ref = self.reference.detach().flatten(1) if self.reference.ndim > 1 else self.reference.detach().view(1, -1)
        ref = ref.expand(batch_size, -1) if ref.shape[0] == 1 else _rows(ref, batch_size, "reference embedding")
        return _BoundEmbedding(ref.cpu(), self.metric)


@dataclass(frozen=True)
class _BoundEmbedding(BoundTarget):
    reference: Tensor  # (B, D)
    metric: str

    @property
    def batch_size(self) -> int:
        return int(self.reference.shape[0])

    def take(self, rows: Tensor) -> BoundTarget:
        return _BoundEmbedding(self.reference[rows.cpu()], self.metric)

    def __call__(self, output: object) -> Tensor:
        if not isinstance(output, Tensor):
            raise ModelOutputError(
                f"an embedding target needs a tensor output, got {type(output).__name__}",
                "wrap the model to return the embedding",
            )
        emb = output.flatten(1).float()
        ref = self.reference.to(emb.device, emb.dtype)
        if emb.shape != ref.shape:
            raise TargetError(
                f"the model's embedding has shape {tuple(emb.shape)}, the reference {tuple(ref.shape)}",
                "pass a reference of the model's embedding size",
            )
        return F.cosine_similarity(emb, ref, dim=1) if self.metric == "cosine" else (emb * ref).sum(1)
