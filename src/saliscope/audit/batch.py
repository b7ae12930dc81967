"""THE per-batch step of an audit: a batch of preprocessed images in, a batch of small results out.

:func:`audit_batch` is a pure function of its arguments — no file access, no global state, nothing kept
between calls (beyond the explainer's own caches: its chunk plan and resolved layer) — so a distributed
engine (Spark, Ray, Dask) can map it over partitions of a data set and merge the results with
:mod:`saliscope.audit.stats`, exactly as the local runner does. Its only side effect is running the model,
and that happens inside the explainer's guard, which leaves the model exactly as found.

Per image it keeps only what the audit needs, so results stay small whatever the input size:

- the saliency map as a *mass* map: non-negative evidence, divided by its total, so that every image
  weighs the same in a class's mean and a region's value is "the share of the evidence that lies there";
- that map summed over a ``grid × grid`` partition (``(G, G)``, summing to 1), for the mean maps, the
  fixed-spot search and the thumbnails;
- the mass in each region (border, corners, the user's box), measured at full input resolution;
- the class explained and its score;
- the model's view of the image, downscaled, for the per-class mean image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.cost import Cost
from ..core.errors import InputError
from ..core.targets import ClassTarget, PredictedClass
from ..core.views import Evidence, Reduction
from ..methods.base import Explainer
from ..models.preprocess import Preprocess
from ..viz.display import display_hint
from .regions import Region, grid_sums, region_masses, summed_area


@dataclass(frozen=True)
class BatchResult:
    """What :func:`audit_batch` returns for a batch of ``B`` images and ``R`` regions.

    Attributes:
        maps: ``(B, G, G)`` float64, each image's saliency mass per grid cell (sums to 1; all 0 when flat).
        masses: ``(B, R)`` float64, each image's share of saliency mass in each region (NaN when flat).
        classes: ``(B,)`` long, the class each map explains.
        scores: ``(B,)`` float64, the explained class's score (a logit), NaN when the method reports none.
        flat: ``(B,)`` bool, maps with no positive evidence at all (nothing to measure).
        pixels: ``(B, 3, h, w)`` float32 in [0, 1], the model's view downscaled; None without a preprocessing.
        regions: the regions, in the order of ``masses``' columns.
        cost: what the explanation cost (passes, seconds, peak memory); the rest of the step is cheap.
    """

    maps: Tensor
    masses: Tensor
    classes: Tensor
    scores: Tensor
    flat: Tensor
    pixels: Tensor | None
    regions: tuple[Region, ...]
    cost: Cost

    def __len__(self) -> int:
        return int(self.maps.shape[0])


def mass_view(method: str, evidence: Evidence | None = None) -> tuple[Reduction, Evidence]:
    """Channel reduction and evidence that turn ``method``'s attributions into a non-negative map.

    The method's usual display (:func:`saliscope.viz.display_hint`), except that signed maps keep only
    their positive evidence — what raised the explained score — since a mass needs non-negative values.
    """
    hint = display_hint(method)
    wanted = evidence or ("positive" if hint.evidence == "signed" else hint.evidence)
    if wanted == "signed":
        raise InputError(
            "an audit measures saliency mass, which needs non-negative maps",
            "use evidence 'positive', 'negative' or 'absolute'",
        )
    hint = hint.with_evidence(wanted)
    return hint.reduce, hint.evidence


def audit_batch(
    explainer: Explainer,
    images: Tensor,
    *,
    regions: Sequence[Region],
    targets: Tensor | Sequence[int] | None = None,
    grid: int = 16,
    preprocess: Preprocess | None = None,
    view_size: int = 96,
    evidence: Evidence | None = None,
) -> BatchResult:
    """Explain a batch and reduce every map to the audit's per-image numbers.

    Args:
        explainer: any saliscope explainer (e.g. ``GradCAM(model)``); it runs once on the whole batch.
        images: ``(B, C, H, W)`` preprocessed batch (model space); never modified.
        regions: where to measure mass (see :func:`saliscope.audit.regions.standard_regions`).
        targets: ``(B,)`` class per image to explain, or None for each image's predicted class.
        grid: cells per side of the stored map.
        preprocess: the model's preprocessing, to turn ``images`` back into pixels for the mean image.
        view_size: side of the downscaled view kept for the mean image (at most the input's side).
        evidence: which evidence counts as mass (default: see :func:`mass_view`).

    Returns:
        A :class:`BatchResult`; all tensors on the CPU.
    """
    target = PredictedClass() if targets is None else ClassTarget(tuple(int(t) for t in targets))
    explanation = explainer.explain(images, target)
    reduce, chosen = mass_view(explainer.name, evidence)
    # Measured where the maps are (on a GPU too); only the small results travel to the CPU.
    saliency = explanation.saliency(reduce, chosen)[:, 0].detach().to(torch.float64)  # (B, H, W)
    total = saliency.flatten(1).sum(1)
    flat = ~(total > 0) | ~torch.isfinite(total)
    mass = saliency / torch.where(flat, torch.ones_like(total), total)[:, None, None]
    mass[flat] = 0.0
    table = summed_area(mass)
    masses = region_masses(table, regions).cpu()
    flat = flat.cpu()
    masses[flat] = float("nan")
    classes = explanation.classes
    if classes is None:  # class targets always bind to classes; this guards a custom method
        raise InputError(f"{explainer.name} did not say which class it explained", "use a class target")
    scores = explanation.scores
    return BatchResult(
        maps=grid_sums(table, grid).cpu(),
        masses=masses,
        classes=classes.detach().to("cpu", torch.long),
        scores=(
            torch.full((len(flat),), float("nan"), dtype=torch.float64)
            if scores is None
            else scores.detach().to("cpu", torch.float64)
        ),
        flat=flat,
        pixels=None if preprocess is None else model_view(images, preprocess, view_size),
        regions=tuple(regions),
        cost=explanation.cost,
    )


def model_view(images: Tensor, preprocess: Preprocess, size: int) -> Tensor:
    """``(B, 3, H, W)`` model space → ``(B, 3, s, s')`` pixels in [0, 1], the longer side at most ``size``."""
    pixels = preprocess.denormalize(images.detach().to("cpu", torch.float32)).clamp(0.0, 1.0)
    height, width = int(pixels.shape[-2]), int(pixels.shape[-1])
    scale = min(1.0, size / max(height, width))
    if scale == 1.0:
        return pixels
    shape = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(pixels, size=shape, mode="area")
