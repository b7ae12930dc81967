"""Localisation: does the map point at the object? No model needed, only the map and a region.

The region is a ``(B, H, W)`` boolean mask (``(B, 1, H, W)`` and 0/1 numbers accepted) or ``(B, 4)``
boxes ``x0, y0, x1, y1`` in pixels, corners on the pixel grid: a pixel is inside a box when its centre
``(col + 0.5, row + 0.5)`` is, so ``[0, 0, W, H]`` is the whole image and ``[2, 2, 4, 4]`` the 2×2
pixels at rows and columns 2 and 3. Maps are taken signed (``saliency_map``): positive evidence points;
pass ``e.saliency(evidence="absolute")`` to use magnitudes.

- :func:`pointing_game`: Zhang et al. 2018, "Top-down Neural Attention by Excitation Backprop" (IJCV).
- :func:`energy_pointing_game`: Wang et al. 2020, "Score-CAM: Score-Weighted Visual Explanations for
  Convolutional Neural Networks" (CVPR workshops).
- :func:`top_k_iou`: intersection over union of the top-k% pixels with the region.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..core.errors import InputError, NonFiniteError
from ..core.views import FlatMapWarning
from ._common import Attribution, saliency_map
from .faithfulness import count_of, percent, removal_rank
from .results import floats


def _map(attribution: Attribution) -> Tensor:
    """``(B, H, W)`` float map, finite."""
    sal = saliency_map(attribution)[:, 0]
    if not bool(torch.isfinite(sal).all()):
        raise NonFiniteError("the map contains NaN or Inf", "check the explanation (try the method in float64)")
    return sal


def region_mask(region: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """``(B, H, W)`` bool from a mask or ``(B, 4)`` boxes (see the module docstring); every region non-empty."""
    b, h, w = shape
    if not isinstance(region, Tensor):
        raise InputError(
            f"expected a mask or boxes as a tensor, got {type(region).__name__}",
            "pass a (B, H, W) bool mask or (B, 4) boxes x0, y0, x1, y1 as a torch tensor",
        )
    if region.ndim == 2 and region.shape[-1] == 4:
        boxes = region.detach().cpu().double()
        if boxes.shape[0] != b:
            raise InputError(f"{boxes.shape[0]} boxes for a batch of {b}", "give one box per image: (B, 4)")
        cy = torch.arange(h, dtype=torch.float64) + 0.5
        cx = torch.arange(w, dtype=torch.float64) + 0.5
        x0, y0, x1, y1 = (boxes[:, i, None] for i in range(4))
        inside_y = (cy >= y0) & (cy <= y1)  # (B, H)
        inside_x = (cx >= x0) & (cx <= x1)  # (B, W)
        mask = inside_y[:, :, None] & inside_x[:, None, :]
    else:
        mask = region.detach().cpu()
        if mask.ndim == 4 and mask.shape[1] == 1:
            mask = mask[:, 0]
        if mask.ndim != 3:
            raise InputError(
                f"a region must be a (B, H, W) mask or (B, 4) boxes, got {tuple(region.shape)}",
                "pass a bool mask of the image's size or boxes x0, y0, x1, y1 in pixels",
            )
        if mask.dtype != torch.bool:
            if not bool(((mask == 0) | (mask == 1)).all()):
                raise InputError("a mask must hold only 0 / 1 (or True / False)", "threshold it first, e.g. mask > 0.5")
            mask = mask != 0
        if tuple(mask.shape) != (b, h, w):
            raise InputError(
                f"the mask {tuple(mask.shape)} does not fit the maps {(b, h, w)}",
                "pass one mask per image, at the map's (input's) resolution",
            )
    empty = (~mask.flatten(1).any(1)).nonzero().flatten().tolist()
    if empty:
        raise InputError(
            f"the region of image(s) {empty} is empty",
            "check the mask, or the box corners (x0 < x1, y0 < y1, in pixels)",
        )
    return mask


@dataclass(frozen=True)
class PointingGame:
    """Whether each map's maximum falls on the region (Zhang et al. 2018).

    Attributes:
        hits: ``(B,)`` bool. ``peaks``: ``(B, 2)`` the maximum's ``(row, col)`` (first in raster order on
            ties). ``tolerance``: pixels of slack around the region (the paper uses 15).
    """

    hits: Tensor
    peaks: Tensor
    tolerance: float
    higher_is_better: ClassVar[bool] = True

    @property
    def value(self) -> Tensor:
        return self.hits.float()

    @property
    def accuracy(self) -> float:
        """Share of hits over the batch."""
        return float(self.hits.float().mean())

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": "pointing-game",
            "higher_is_better": True,
            "tolerance": self.tolerance,
            "hits": [bool(v) for v in self.hits],
            "peaks": self.peaks.tolist(),
            "accuracy": self.accuracy,
        }


def pointing_game(attribution: Attribution, region: Tensor, *, tolerance: float = 0.0) -> PointingGame:
    """Pointing game (Zhang et al. 2018): a hit when the map's maximum lies within ``tolerance`` pixels
    (Euclidean) of the region. ``tolerance=15`` is the paper's setting for 224-pixel images; the default
    0 asks for the maximum to lie on the region itself.

    Args:
        attribution: an Explanation or a ``(B, 1|C, H, W)`` map.
        region: ``(B, H, W)`` mask or ``(B, 4)`` boxes (module docstring).
    """
    if not (isinstance(tolerance, (int, float)) and tolerance >= 0):
        raise InputError(f"tolerance must be >= 0 pixels, got {tolerance!r}", "use 0, or 15 as Zhang et al.")
    sal = _map(attribution).cpu()
    b, h, w = sal.shape
    mask = region_mask(region, (b, h, w))
    peak = sal.flatten(1).argmax(dim=1)  # the first maximum in raster order
    rows, cols = peak // w, peak % w
    grid_r = torch.arange(h, dtype=torch.float64)[None, :, None]
    grid_c = torch.arange(w, dtype=torch.float64)[None, None, :]
    distance = ((grid_r - rows[:, None, None]).square() + (grid_c - cols[:, None, None]).square()).sqrt()
    nearest = torch.where(mask, distance, torch.full_like(distance, float("inf"))).flatten(1).amin(dim=1)
    return PointingGame(hits=nearest <= tolerance, peaks=torch.stack([rows, cols], dim=1), tolerance=float(tolerance))


@dataclass(frozen=True)
class EnergyPointingGame:
    """Share of the map's positive mass inside the region (Wang et al. 2020); ``energy`` ``(B,)`` in [0, 1],
    NaN for a map without positive evidence. Higher is better; ``region_fraction`` ``(B,)`` is what a
    uniform map would score."""

    energy: Tensor
    region_fraction: Tensor
    higher_is_better: ClassVar[bool] = True

    @property
    def value(self) -> Tensor:
        return self.energy

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": "energy-pointing-game",
            "higher_is_better": True,
            "energy": floats(self.energy),
            "region_fraction": floats(self.region_fraction),
        }


def energy_pointing_game(attribution: Attribution, region: Tensor) -> EnergyPointingGame:
    """Energy-based pointing game (Wang et al. 2020, Score-CAM): ``sum(map+ inside) / sum(map+)``, where
    ``map+`` is the map's positive part (a signed map's negative evidence is not "pointing" anywhere)."""
    sal = _map(attribution).cpu().double()
    b, h, w = sal.shape
    mask = region_mask(region, (b, h, w))
    positive = sal.clamp(min=0).flatten(1)
    total = positive.sum(dim=1)
    none = (total <= 0).nonzero().flatten().tolist()
    if none:
        warnings.warn(
            FlatMapWarning(f"the map of image(s) {none} has no positive evidence: energy is NaN"), stacklevel=2
        )
    inside = (positive * mask.flatten(1)).sum(dim=1)
    energy = torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, float("nan")))
    return EnergyPointingGame(energy=energy.float(), region_fraction=mask.flatten(1).float().mean(dim=1))


@dataclass(frozen=True)
class TopKIoU:
    """Intersection over union of the map's top-k% pixels with the region; ``iou`` ``(B,)`` in [0, 1],
    higher is better; ``k`` ``(B,)`` the percentage used for each image."""

    iou: Tensor
    k: Tensor
    higher_is_better: ClassVar[bool] = True

    @property
    def value(self) -> Tensor:
        return self.iou

    def as_dict(self) -> dict[str, Any]:
        return {"metric": "top-k-iou", "higher_is_better": True, "iou": floats(self.iou), "k": floats(self.k)}


def top_k_iou(attribution: Attribution, region: Tensor, *, k: float | None = None) -> TopKIoU:
    """IoU of the top ``k``% pixels of the map (descending, ties in raster order) with the region.

    ``k=None`` takes each region's own area, so a map that ranks exactly the region first scores 1.
    """
    sal = _map(attribution).cpu()
    b, h, w = sal.shape
    mask = region_mask(region, (b, h, w)).flatten(1)
    counts = mask.sum(dim=1) if k is None else torch.full((b,), count_of(percent("k", k), h * w))
    top = removal_rank(sal.flatten(1)) < counts[:, None]
    iou = (top & mask).sum(dim=1).double() / (top | mask).sum(dim=1).double()
    return TopKIoU(iou=iou.float(), k=(counts.double() / (h * w) * 100).float())
