"""Targets for object detectors: a box the user names, or the K-th detection of the clean image.

A detector's output is read in torchvision's format: a list with one dict per image holding
``boxes (n, 4)`` as ``(x0, y0, x1, y1)`` in input pixels, ``labels (n,)`` and ``scores (n,)`` (Faster /
Mask / Keypoint R-CNN, RetinaNet, FCOS, SSD and SSDlite all return it). A detector may add
``class_probs (n, K)`` (each detection's class-probability vector) and ``objectness (n,)``; D-RISE uses them.

Both targets bind to :class:`BoundDetections`: one reference box and label per image. Every perturbed,
noisy or path copy of the image is scored by the same rule: the highest score among its detections of the
reference label whose IoU with the reference box is at least ``iou_threshold`` (0 when there is none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ModelOutputError, TargetError
from .targets import BoundTarget, Target

Detection = Mapping[str, Tensor]
_KEYS = ("boxes", "labels", "scores")


def is_detection_output(output: object) -> bool:
    """Whether ``output`` looks like a detector's: a list of dicts with boxes, labels and scores."""
    return (
        isinstance(output, (list, tuple))
        and len(output) > 0
        and all(isinstance(d, Mapping) and all(k in d for k in _KEYS) for d in output)
    )


def detections_of(output: object, batch_size: int | None = None) -> Sequence[Detection]:
    """``output`` checked to be a detector's output (one dict per image), with ``batch_size`` images."""
    if not isinstance(output, (list, tuple)) or not all(isinstance(d, Mapping) for d in output):
        raise ModelOutputError(
            f"a detection target needs a detector's output (a list of dicts per image), got {type(output).__name__}",
            "use BoxTarget / DetectionTarget with a torchvision-style detector, or a class target for a classifier",
            "use --box / --detection with a detector, or --target for a classifier",
        )
    missing = next((k for d in output for k in _KEYS if k not in d), None)
    if missing is not None:
        raise ModelOutputError(
            f"the detector's output has no {missing!r} entry (it has {', '.join(map(repr, output[0]))})",
            "return one dict per image with 'boxes' (n, 4), 'labels' (n,) and 'scores' (n,), as torchvision does",
        )
    if batch_size is not None and len(output) != batch_size:
        raise TargetError(
            f"the target is bound to {batch_size} images, the detector returned {len(output)}", "bind to this batch"
        )
    return output


def ranked(detection: Detection) -> Tensor:
    """Indices of one image's detections by decreasing score (ties keep the detector's order): index K of
    :class:`DetectionTarget` and the CLI's list of detections both count in this order."""
    return torch.argsort(detection["scores"].detach(), descending=True, stable=True)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union of boxes ``a (n, 4)`` and ``b (m, 4)`` in ``(x0, y0, x1, y1)``: ``(n, m)``.

    A box thinner than a pixel counts as one pixel wide (or high), about its centre: a detector may clip a box
    to zero width at the image's edge, and that detection must still match itself on a re-run that moves it
    by a rounding error."""
    return _iou(_at_least_a_pixel(a)[:, None], _at_least_a_pixel(b)[None])


def paired_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of each box of ``a (n, 4)`` with the box of ``b (n, 4)`` in the same row: ``(n,)`` (see :func:`box_iou`)."""
    return _iou(_at_least_a_pixel(a), _at_least_a_pixel(b))


def _iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes ``(..., 4)`` that broadcast against each other."""
    inter = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).prod(-1)
    return inter / (area_a + area_b - inter)


def _at_least_a_pixel(boxes: Tensor) -> Tensor:
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0) / 2
    return torch.cat([centre - half, centre + half], dim=1)


def check_box(box: Sequence[float] | Tensor, batch_size: int) -> Tensor:
    """``(batch_size, 4)`` float32 CPU boxes from one box or one per image, each finite with x1 > x0, y1 > y0."""
    boxes = torch.as_tensor(box, dtype=torch.float32).detach().cpu()
    if boxes.shape[-1:] != (4,) or boxes.ndim not in (1, 2):
        raise TargetError(
            f"a box has 4 numbers (x0, y0, x1, y1), got shape {tuple(boxes.shape)}",
            "pass box=(x0, y0, x1, y1), or one box per image as a (B, 4) tensor",
            "pass --box x0,y0,x1,y1 (four numbers)",
        )
    if boxes.ndim == 1:
        boxes = boxes.expand(batch_size, 4)
    elif boxes.shape[0] != batch_size:
        raise TargetError(
            f"{boxes.shape[0]} boxes given for a batch of {batch_size} images", "give one box or one box per image"
        )
    if not bool(torch.isfinite(boxes).all()):
        raise TargetError(f"the box {boxes[0].tolist()} is not finite", "pass four finite numbers x0, y0, x1, y1")
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bool(bad.any()):
        x0, y0, x1, y1 = (_num(v) for v in boxes[int(bad.nonzero()[0, 0])].tolist())
        raise TargetError(
            f"the box ({x0}, {y0}, {x1}, {y1}) is empty: it needs x1 > x0 and y1 > y0",
            "pass the corners in the order (x0, y0, x1, y1): left, top, right, bottom",
            "pass --box x0,y0,x1,y1 with x0 < x1 and y0 < y1 (left, top, right, bottom)",
        )
    return boxes.contiguous()


def _num(value: float) -> str:
    return f"{value:g}"


def _labels(label: int | Sequence[int], batch_size: int) -> Tensor:
    if isinstance(label, bool) or not isinstance(label, (int, Sequence)):
        raise TargetError(f"a label must be a class index, not {label!r}", "pass e.g. label=1")
    if isinstance(label, int):
        return torch.full((batch_size,), label, dtype=torch.long)
    if len(label) != batch_size:
        raise TargetError(f"{len(label)} labels given for a batch of {batch_size}", "give one label or one per image")
    return torch.tensor([int(v) for v in label], dtype=torch.long)


@dataclass(frozen=True)
class BoundDetections(BoundTarget):
    """One reference detection per image: its box, label and (when taken from the clean output) its score and
    class-probability vector. Scores a detector output by the best matching detection (see the module)."""

    boxes: Tensor  # (B, 4) float32, CPU
    labels: Tensor  # (B,) long, CPU
    iou_threshold: float = 0.5
    scores: Tensor | None = None  # (B,) the reference detections' clean scores; None for a box the user named
    class_probs: Tensor | None = None  # (B, K) when the detector returns class_probs

    @property
    def batch_size(self) -> int:
        return int(self.boxes.shape[0])

    def take(self, rows: Tensor) -> BoundDetections:
        rows = rows.cpu()
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return BoundDetections(
            self.boxes[rows], self.labels[rows], self.iou_threshold, pick(self.scores), pick(self.class_probs)
        )

    def matches(self, output: object) -> list[Tensor]:
        """Per image, the 0/1 mask of its detections that match the reference (label and IoU)."""
        found = detections_of(output, self.batch_size)
        masks = []
        for ref, label, det in zip(self.boxes, self.labels, found, strict=True):
            boxes = det["boxes"].detach()
            iou = box_iou(ref.to(boxes.device, boxes.dtype).view(1, 4), boxes).view(-1)
            masks.append((det["labels"] == label.to(det["labels"].device)) & (iou >= self.iou_threshold))
        return masks

    def __call__(self, output: object) -> Tensor:
        scores = []
        for hit, det in zip(self.matches(output), detections_of(output), strict=True):
            s = det["scores"][hit]
            scores.append(s.max() if s.numel() else det["scores"].sum() * 0)  # 0, still on the autograd graph
        return torch.stack(scores).float()

    def describe(self, row: int = 0) -> dict[str, object]:
        """The reference detection of image ``row`` as plain numbers (for summaries)."""
        out: dict[str, object] = {
            "box": [round(float(v), 2) for v in self.boxes[row]],
            "label": int(self.labels[row]),
            "iou_threshold": self.iou_threshold,
        }
        if self.scores is not None:
            out["score"] = float(self.scores[row])
        return out


@dataclass(frozen=True)
class BoxTarget(Target):
    """A detector's confidence in a box: the highest score among detections of ``label`` whose IoU with
    ``box`` is at least ``iou_threshold`` (0 when there is none, and the map is then flat).

    ``box``: ``(x0, y0, x1, y1)`` in the detector's input pixels, or one box per image ``(B, 4)``.
    ``label``: the class index (one, or one per image); None takes the label of the clean image's detection
    that overlaps the box most (an error names the best IoU when none reaches ``iou_threshold``).
    """

    box: Tensor | tuple[float, float, float, float]
    label: int | tuple[int, ...] | None = None
    iou_threshold: float = 0.5

    def __post_init__(self) -> None:
        _check_threshold(self.iou_threshold)

    @property
    def needs_output(self) -> bool:
        return self.label is None

    def bind(self, output: object, batch_size: int) -> BoundDetections:
        boxes = check_box(self.box, batch_size)
        if self.label is not None:
            return BoundDetections(boxes, _labels(self.label, batch_size), self.iou_threshold)
        found = detections_of(output, batch_size)
        labels, scores = [], []
        for b, (ref, det) in enumerate(zip(boxes, found, strict=True)):
            iou = box_iou(ref.view(1, 4), det["boxes"].detach().float().cpu()).view(-1)
            best = int(iou.argmax()) if iou.numel() else -1
            if best < 0 or float(iou[best]) < self.iou_threshold:
                near = f"the best IoU is {float(iou[best]):.2f}" if best >= 0 else "the detector found nothing"
                corners = ", ".join(_num(v) for v in ref.tolist())
                raise TargetError(
                    f"no detection of image {b} overlaps the box ({corners}) ({near}, below {self.iou_threshold:g})",
                    "pass label= to explain the box for a class, or a box around one of the detections",
                    "add --label NAME|INDEX to explain the box for a class, or draw the box around a detection",
                )
            labels.append(int(det["labels"][best]))
            scores.append(float(det["scores"][best]))
        return BoundDetections(
            boxes, torch.tensor(labels, dtype=torch.long), self.iou_threshold, torch.tensor(scores, dtype=torch.float32)
        )


@dataclass(frozen=True)
class DetectionTarget(Target):
    """The ``index``-th detection of the clean image, by decreasing score (0: the most confident), bound once:
    every altered copy of the image is then scored by the best detection of the same label that overlaps
    that box by ``iou_threshold`` (see :class:`BoxTarget`). ``index``: one for the batch or one per image."""

    index: int | tuple[int, ...] = 0
    iou_threshold: float = 0.5

    def __post_init__(self) -> None:
        _check_threshold(self.iou_threshold)
        indices = (self.index,) if isinstance(self.index, int) else self.index
        if isinstance(self.index, bool) or not all(isinstance(k, int) and not isinstance(k, bool) for k in indices):
            raise TargetError(f"a detection index must be an int, not {self.index!r}", "pass e.g. DetectionTarget(0)")
        if any(k < 0 for k in indices):
            raise TargetError(
                f"a detection index counts from 0, got {self.index!r}",
                "pass 0 for the most confident detection",
                "pass --detection 0 for the most confident detection",
            )

    @property
    def needs_output(self) -> bool:
        return True

    def bind(self, output: object, batch_size: int) -> BoundDetections:
        found = detections_of(output, batch_size)
        indices = [self.index] * batch_size if isinstance(self.index, int) else list(self.index)
        if len(indices) != batch_size:
            raise TargetError(
                f"{len(indices)} detection indices given for a batch of {batch_size}",
                "give one index for the whole batch or exactly one per image",
            )
        boxes, labels, scores, probs = [], [], [], []
        for b, (k, det) in enumerate(zip(indices, found, strict=True)):
            n = int(det["scores"].numel())
            if k >= n:
                raise _beyond(k, n, b if batch_size > 1 else None)
            j = int(ranked(det)[k])
            boxes.append(det["boxes"][j].detach().float().cpu())
            labels.append(int(det["labels"][j]))
            scores.append(float(det["scores"][j]))
            if "class_probs" in det:
                probs.append(det["class_probs"][j].detach().float().cpu())
        return BoundDetections(
            torch.stack(boxes),
            torch.tensor(labels, dtype=torch.long),
            self.iou_threshold,
            torch.tensor(scores, dtype=torch.float32),
            torch.stack(probs) if len(probs) == batch_size else None,
        )


def _beyond(k: int, n: int, image: int | None) -> TargetError:
    where = "" if image is None else f" in image {image}"
    if n == 0:
        return TargetError(
            f"the detector found nothing{where} (no detection scored above its threshold)",
            "lower the detector's score threshold (torchvision: box_score_thresh= for Faster / Mask / Keypoint"
            " R-CNN, score_thresh= for RetinaNet, FCOS and SSD), or explain a box with BoxTarget(box, label)",
            "explain a box instead with --box x0,y0,x1,y1 --label NAME, or use a model with a lower score threshold",
        )
    return TargetError(
        f"detection {k} asked for, but the detector found {n}{where} (0..{n - 1})",
        f"pick a detection index from 0 to {n - 1}",
        f"use --detection 0..{n - 1}",
    )


def _check_threshold(value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1 or math.isnan(value):
        raise TargetError(f"iou_threshold must be in (0, 1], got {value!r}", "use e.g. iou_threshold=0.5")
