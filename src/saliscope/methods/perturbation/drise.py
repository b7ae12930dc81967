"""D-RISE (Petsiuk, Jain, Manjunatha, Nguyen, Mehta, Ordonez & Saenko, "Black-box Explanation of Object
Detectors via Saliency Maps", CVPR 2021)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...core.cost import CostMeter
from ...core.detection_targets import BoundDetections, detections_of, paired_iou
from ...core.errors import InputError, TargetError
from ...core.targets import BoundTarget, recorded
from ..base import Attribution, Precision
from .fill import Replacement
from .rise import RISE


class DRISE(RISE):
    """RISE for a detection: each masked image is weighted by how well its detections still match the target.

    The target detection ``d_t = (L_t, P_t, O_t)`` (box, class-probability vector, objectness) is bound once
    on the clean image (:class:`~saliscope.DetectionTarget` or :class:`~saliscope.BoxTarget`). A masked
    image's detections ``d_j`` give it the weight of the paper's similarity, best over its detections:

        ``w = max_j IoU(L_t, L_j) · cos(P_t, P_j) · O_j``

    and the map is RISE's score-weighted mean of the masks with ``w`` as the score (see :class:`RISE`;
    ``centre=True`` subtracts the mean weight first, which removes the coverage noise but not the evidence;
    ``centre=False`` gives the paper's ``sum_i w_i M_i / (n_masks · p)``).

    How torchvision's detectors are mapped: their outputs carry one label and one score per detection, not
    a class-probability vector, and no objectness of the final detections (Faster / Mask / Keypoint R-CNN
    keep the RPN's objectness for proposals only; RetinaNet and SSD have none; FCOS folds its centerness
    into the score). So ``P_j`` is the detection's score on its label and ``(1 - score) / (K - 1)`` on each
    of the other ``K`` classes (the vector of highest entropy with that score; K counts the background where
    the detector has one), and ``O_j = 1``. The reference vector is built the same way from the clean
    detection's score (a :class:`~saliscope.BoxTarget` with a label and no clean detection: one-hot). A detector
    whose dicts also hold ``class_probs (n, K)`` and ``objectness (n,)`` gets the paper's similarity exactly.
    Without K (no ``num_classes``, no labels on the model, no known head), ``cos`` is 1 for the same label and
    0 otherwise. A masked image whose target vanished (below the detector's score threshold) weighs 0.

    Cost: ``n_masks`` forward passes per image, batched and chunked by the memory budget; the masks are
    drawn from ``seed`` on the CPU, the same for every image of a batch. Returns ``(B, 1, H, W)`` maps.

    Args:
        model: a detector returning torchvision's format (a list of dicts with boxes, labels and scores).
        n_masks: random masks per image (the paper: 5000 on COCO; 4000 here).
        grid: cells per side of the low-resolution masks (the paper: 16).
        p: probability that a cell is kept.
        seed: seeds the masks; None draws a seed, recorded in the explanation's params.
        num_classes: K for the class-probability vectors; None reads it from the model (the class count of
            a torchvision detector's head, else its ``labels``).
        centre: subtract the mean weight first (see :class:`RISE`).
        replacement: what hidden pixels become (see :class:`PerturbationExplainer`; the paper multiplies by
            the mask, i.e. ``replacement="constant", value=<black>``: 0 for torchvision's detectors).
        value: the constant for ``replacement="constant"``.
        blur_sigma: the blur's standard deviation in pixels for ``replacement="blur"``.
        progress: ``True`` shows a tqdm bar, ``False`` never; ``None`` only for long runs on a terminal.
    """

    name: ClassVar[str] = "drise"

    def __init__(
        self,
        model: nn.Module,
        *,
        n_masks: int = 4000,
        grid: int = 16,
        p: float = 0.5,
        seed: int | None = None,
        num_classes: int | None = None,
        centre: bool = True,
        replacement: Replacement = "constant",
        value: float = 0.0,
        blur_sigma: float = 10.0,
        progress: bool | None = None,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        precision: Precision = "auto",
    ) -> None:
        super().__init__(
            model,
            n_masks=n_masks,
            grid=grid,
            p=p,
            centre=centre,
            seed=seed,
            replacement=replacement,
            value=value,
            blur_sigma=blur_sigma,
            progress=progress,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            precision=precision,
        )
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
        ):
            raise InputError(
                f"num_classes must be an integer >= 2, got {num_classes!r}", "omit it to read it off the model"
            )
        self.num_classes = num_classes

    def params(self) -> dict[str, Any]:
        return {**super().params(), "num_classes": self.num_classes}

    def _perturb(self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter) -> list[Attribution]:
        classes = self.num_classes if self.num_classes is not None else detector_classes(self.model)
        similarity: list[BoundTarget] = [Similarity(_reference(t), classes) for t in targets]
        results = super()._perturb(net, x, similarity, meter)
        for result in results:
            result.params["num_classes"] = classes
            result.extras["mean_similarity"] = result.extras.pop("mean_score")
        return results


def _reference(target: BoundTarget) -> BoundDetections:
    target = recorded(target)
    if isinstance(target, BoundDetections):
        return target
    raise TargetError(
        f"D-RISE explains a detection, and the target is not one ({type(target).__name__})",
        "pass target=saliscope.DetectionTarget(k) (the k-th detection) or saliscope.BoxTarget(box, label)",
        "explain a detection with --detection K or --box x0,y0,x1,y1 on a detector",
    )


def detector_classes(model: nn.Module) -> int | None:
    """K, the length of a detector's class-probability vectors: its torchvision head's class count (background
    included), else the number of its ``labels``, else None."""
    for module in model.modules():
        cls_score = getattr(getattr(module, "box_predictor", None), "cls_score", None)  # Faster / Mask / Keypoint R-CNN
        if isinstance(cls_score, nn.Linear):
            return int(cls_score.out_features)
        head = getattr(getattr(module, "head", None), "classification_head", None)
        for attr in ("num_classes", "num_columns"):  # RetinaNet / FCOS, SSD
            value = getattr(head, attr, None)
            if isinstance(value, int) and value >= 2:
                return value
    labels = getattr(model, "labels", None)
    return len(labels) if isinstance(labels, (list, tuple)) and len(labels) >= 2 else None


@dataclass(frozen=True)
class Similarity(BoundTarget):
    """The D-RISE weight of a batch of detector outputs against one reference detection per image."""

    reference: BoundDetections
    classes: int | None

    @property
    def batch_size(self) -> int:
        return self.reference.batch_size

    def take(self, rows: Tensor) -> Similarity:
        return Similarity(self.reference.take(rows), self.classes)

    def __call__(self, output: object) -> Tensor:
        """``(N,)``: each image's best ``IoU · cos · objectness`` over its detections (0 when it has none);
        all the detections of a chunk are scored at once."""
        ref = self.reference
        found = detections_of(output, ref.batch_size)
        counts = torch.tensor([int(d["boxes"].shape[0]) for d in found])
        device = found[0]["boxes"].device if found else torch.device("cpu")
        weights = torch.zeros(ref.batch_size, device=device)
        if int(counts.sum()) == 0:
            return weights
        owner = torch.repeat_interleave(torch.arange(ref.batch_size), counts).to(device)
        boxes = torch.cat([d["boxes"].detach().float() for d in found])
        labels = torch.cat([d["labels"].detach() for d in found]).to(device)
        scores = torch.cat([d["scores"].detach().float() for d in found])
        iou = paired_iou(ref.boxes.to(device)[owner], boxes)
        similarity = iou * self._cosine(found, owner, labels, scores)
        if all("objectness" in d for d in found):
            similarity = similarity * torch.cat([d["objectness"].detach().float() for d in found])
        return weights.scatter_reduce(0, owner, similarity, reduce="amax", include_self=True)

    def _cosine(self, found: Sequence[Any], owner: Tensor, labels: Tensor, scores: Tensor) -> Tensor:
        """``cos(P_t, P_j)`` for every detection ``j`` against its image's reference ``t``."""
        ref = self.reference
        device = labels.device
        mine = ref.labels.to(device)[owner]
        if all(isinstance(d.get("class_probs"), Tensor) for d in found):
            probs = torch.cat([d["class_probs"].detach().float() for d in found])
        elif self.classes is None:
            return (labels == mine).float()
        else:
            k = max(self.classes, int(labels.max()) + 1, int(ref.labels.max()) + 1)
            probs = _spread(labels, scores, k)
        k = int(probs.shape[1])
        if ref.class_probs is not None and ref.class_probs.shape[1] == k:
            reference = ref.class_probs.to(device).float()
        elif ref.scores is not None:
            reference = _spread(ref.labels.to(device), ref.scores.to(device).float(), k)
        else:
            reference = F.one_hot(ref.labels.to(device).clamp(max=k - 1), k).float()
        return F.cosine_similarity(probs, reference[owner], dim=1)


def _spread(labels: Tensor, scores: Tensor, k: int) -> Tensor:
    """``(n, k)`` class-probability vectors with ``score`` on the label and the rest spread evenly."""
    rest = ((1 - scores.clamp(0, 1)) / (k - 1)).view(-1, 1)
    vectors = rest.expand(labels.shape[0], k).clone()
    vectors.scatter_(1, labels.view(-1, 1).long(), scores.clamp(0, 1).view(-1, 1))
    return vectors
