"""Superpixels: the interpretable features of LIME and KernelSHAP on images.

Segmenting runs on each image rescaled to [0, 1] (model-space inputs are normalised), always in float32,
so float32 and float64 runs, and a batch and its images alone, get the same segments.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ...core.errors import InputError

SegmenterName = Literal["slic", "quickshift", "grid"]
Segmenter = SegmenterName | Callable[[Tensor], Tensor]
_NAMES: tuple[str, ...] = ("slic", "quickshift", "grid")


def check_segmenter(segmenter: Segmenter) -> None:
    if not callable(segmenter) and segmenter not in _NAMES:
        raise InputError(
            f"unknown superpixel method {segmenter!r}",
            "use 'slic', 'quickshift', 'grid', or a function mapping (B, C, H, W) to (B, H, W) labels",
        )


def superpixels(
    x: Tensor, segmenter: Segmenter = "slic", *, n_segments: int = 50, compactness: float = 10.0
) -> tuple[Tensor, list[int]]:
    """Labels ``(B, H, W)`` long (``0 .. S_i - 1`` per image, on ``x``'s device) and the counts ``S_i``.

    - ``"slic"``: SLIC (Achanta et al. 2012) in CIE-Lab for 3-channel images, about ``n_segments``
      regions of ``compactness``;
    - ``"quickshift"``: Quickshift (Vedaldi & Soatto 2008) with LIME's settings (kernel 4, max_dist 200,
      ratio 0.2); needs 3 channels and decides the number of regions itself;
    - ``"grid"``: square cells, about ``n_segments`` of them;
    - a function ``(B, C, H, W) -> (B, H, W)`` (or ``(H, W)`` for the whole batch) of integer labels.
    """
    check_segmenter(segmenter)
    batch, channels, height, width = (int(s) for s in x.shape)
    if callable(segmenter):
        labels = torch.as_tensor(segmenter(x))
        if labels.shape == (height, width):
            labels = labels.expand(batch, height, width)
        if tuple(labels.shape) != (batch, height, width) or labels.is_floating_point():
            raise InputError(
                f"the superpixel function returned {labels.dtype} of shape {tuple(labels.shape)}",
                f"return integer labels of shape ({batch}, {height}, {width}) or ({height}, {width})",
            )
    elif segmenter == "grid":
        side = max(1, round((height * width / max(1, n_segments)) ** 0.5))
        rows, cols = torch.arange(height) // side, torch.arange(width) // side
        labels = (rows.view(-1, 1) * (int(cols[-1]) + 1) + cols.view(1, -1)).expand(batch, height, width)
    else:
        if segmenter == "quickshift" and channels != 3:
            raise InputError(f"quickshift needs 3-channel images, got {channels}", "use superpixels='slic' or 'grid'")
        images = _unit_range(x)
        labels = torch.stack([torch.from_numpy(_segment(img, segmenter, n_segments, compactness)) for img in images])
    dense, counts = [], []
    for image_labels in labels.to("cpu", torch.long):
        _, inverse = torch.unique(image_labels, return_inverse=True)  # labels 0 .. S-1, in label order
        dense.append(inverse)
        counts.append(int(inverse.max()) + 1)
    return torch.stack(dense).to(x.device), counts


#: A segmentation with fewer than this share of the superpixels asked for is degenerate: LIME / KernelSHAP over
#: it give a map of a few flat regions (one superpixel: a uniform map), whatever the model does.
MIN_SHARE = 0.25
#: SLIC's compactness is multiplied by these factors, in turn, before falling back to a grid.
COMPACTNESS_STEPS: tuple[float, ...] = (10.0, 100.0)


@dataclass(frozen=True)
class Segmentation:
    """Superpixels of a batch and how each image's were made.

    ``labels`` ``(B, H, W)`` long, ``counts`` superpixels per image, ``used`` what made each image's
    (``"slic"``, ``"slic(compactness=100)"``, ``"grid"``, ``"quickshift"``, ``"custom"``).
    """

    labels: Tensor
    counts: list[int]
    used: list[str]


def segment(
    x: Tensor, segmenter: Segmenter = "slic", *, n_segments: int = 50, compactness: float = 10.0
) -> Segmentation:
    """:func:`superpixels`, made again for images it leaves with too few superpixels.

    An image that gets fewer than a quarter (``MIN_SHARE``) of the ``n_segments`` asked for — noise, a
    texture, a scan without edges, where SLIC's colour clusters are fragments that its connectivity step
    merges into one region, or where Quickshift finds few modes — is segmented again by SLIC with the
    compactness raised 10×, then 100×, and finally by the grid, stopping at the first with enough. A higher
    compactness weighs distance in space over distance in colour, so SLIC moves from following colour
    towards its own starting grid while still snapping to what edges there are; the grid is the limit,
    which always gives about the count asked for. A segmentation function of the caller's own is kept as it
    is (it was chosen on purpose; a single region is warned about). One warning per call names the images
    and what was used.
    """
    labels, counts = superpixels(x, segmenter, n_segments=n_segments, compactness=compactness)
    base = "custom" if callable(segmenter) else str(segmenter)
    used = [base] * len(counts)
    wanted = max(1, math.ceil(MIN_SHARE * n_segments))
    few = [i for i, c in enumerate(counts) if c < wanted]
    if not few:
        return Segmentation(labels, counts, used)
    found = {i: counts[i] for i in few}
    if callable(segmenter):
        # The caller's own function decides the count; only one region, a uniform map, is worth a word.
        single = [i for i in few if counts[i] == 1]
        if single:
            warnings.warn(
                f"the superpixel function made one region of image(s) {single}: LIME / KernelSHAP can only give "
                "them a uniform map — check the function, or use superpixels='slic' or 'grid'",
                stacklevel=3,
            )
        return Segmentation(labels, counts, used)
    labels = labels.clone()
    attempts: list[tuple[SegmenterName, float]] = [("slic", compactness * f) for f in COMPACTNESS_STEPS]
    for i in few:
        for how, c in [*attempts, ("grid", compactness)]:
            relabelled, count = superpixels(x[i : i + 1], how, n_segments=n_segments, compactness=c)
            labels[i], counts[i] = relabelled[0], count[0]
            used[i] = "grid" if how == "grid" else f"slic(compactness={c:g})"
            if count[0] >= wanted:
                break
    listing = ", ".join(f"image {i}: {found[i]}, made again by {used[i]}: {counts[i]}" for i in few)
    warnings.warn(
        f"{base} made fewer than a quarter of the {n_segments} superpixels asked for ({listing}). An image "
        "without edges (noise, a texture) would otherwise get a map of a few flat regions; what was used is in "
        "e.params['segmentation']. Pass superpixels='grid' (or a function of your own) to choose yourself.",
        stacklevel=3,
    )
    return Segmentation(labels, counts, used)


def paint(values: Tensor, labels: Tensor) -> Tensor:
    """``(B, 1, H, W)``: each pixel gets its superpixel's value; ``values`` ``(B, S_max)``, ``labels`` ``(B, H, W)``."""
    b, h, w = labels.shape
    return values.gather(1, labels.reshape(b, -1)).view(b, 1, h, w)


def _unit_range(x: Tensor) -> np.ndarray:
    """``(B, H, W, C)`` float64 numpy, each image min-max scaled to [0, 1] (computed in float32)."""
    flat = x.detach().float().cpu().flatten(1)
    low, high = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    unit = (x.detach().float().cpu() - low) / (high - low).clamp(min=1e-12)
    return unit.permute(0, 2, 3, 1).double().numpy()


def _segment(image: np.ndarray, segmenter: str, n_segments: int, compactness: float) -> np.ndarray:
    from skimage.segmentation import quickshift, slic

    if segmenter == "quickshift":
        return quickshift(image, kernel_size=4, max_dist=200, ratio=0.2)
    channels = image.shape[-1]
    return slic(
        image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1, convert2lab=channels == 3
    )
