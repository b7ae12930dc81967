"""Superpixels: the interpretable features of LIME and KernelSHAP on images.

Segmenting runs on each image rescaled to [0, 1] (model-space inputs are normalised), always in float32,
so float32 and float64 runs, and a batch and its images alone, get the same segments.
"""

from __future__ import annotations

from collections.abc import Callable
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
