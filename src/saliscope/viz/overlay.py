"""A saliency map drawn over the original photo, where the model actually looked.

Models see a resized, centre-cropped square; the map lives in that square. ``crop_box`` (from
``Preprocess.crop_box(width, height)``) says which part of the original photo the square covers, so
the map is resampled onto exactly that box and the rest of the photo stays uncoloured.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import Colormap
from PIL import Image

from ..core.errors import InputError
from .colormaps import DEFAULT_ALPHA, MapLike, colorize, normalized_map

Box = tuple[float, float, float, float]


def overlay(
    image: Image.Image,
    saliency: MapLike,
    *,
    crop_box: Box | None = None,
    signed: bool | None = None,
    cmap: str | Colormap | None = None,
    alpha: float = DEFAULT_ALPHA,
    percentile: float = 99.0,
    vmax: float | None = None,
) -> Image.Image:
    """The photo with ``saliency`` blended over the region the model saw; same size as ``image``.

    Args:
        image: the original photo (any PIL mode; the result is RGB).
        saliency: one map, (H, W), (1, H, W) or (1, 1, H, W), in model-input pixels.
        crop_box: (left, top, right, bottom) of the model input in the photo's pixel coordinates;
            None when the map covers the whole photo.
        signed: show as signed (diverging colormap centred on 0) or unsigned (sequential);
            None decides from the data (signed when it has negative values).
        cmap: a matplotlib colormap or its name; default ``RdBu_r`` signed, ``inferno`` unsigned.
        alpha: opacity at the strongest evidence; opacity is ``alpha * |normalised value| ** 0.5``.
        percentile: values are scaled by this percentile of |map| and clipped (robust to outliers).
        vmax: a fixed scale instead (values divided by it and clipped), to compare maps by colour.
    """
    if not isinstance(image, Image.Image):
        raise InputError(f"overlay needs a PIL image, got {type(image).__name__}", "use saliscope.load_image()")
    photo = image if image.mode == "RGB" else image.convert("RGB")
    values, signed = normalized_map(saliency, signed=signed, percentile=percentile, vmax=vmax)
    width, height = photo.size
    box = _check_box(crop_box, width, height)
    x0, x1 = _span(box[0], box[2], width)
    y0, y1 = _span(box[1], box[3], height)
    out = np.array(photo)  # (H, W, 3) uint8, a copy
    if x1 <= x0 or y1 <= y0:
        return Image.fromarray(out)
    region = resample(values, box, (x0, y0, x1, y1))
    rgba = colorize(region, signed=signed, cmap=cmap, alpha=alpha)
    a = rgba[..., 3:]
    under = out[y0:y1, x0:x1].astype(np.float32) / 255.0
    blended = under * (1.0 - a) + rgba[..., :3] * a
    out[y0:y1, x0:x1] = np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def resample(values: np.ndarray, box: Box, window: tuple[int, int, int, int]) -> np.ndarray:
    """Bilinearly resample a (h, w) map lying on ``box`` onto the photo's pixels in ``window``.

    ``window`` is (x0, y0, x1, y1) in whole photo pixels; pixel (i, j) covers [j, j+1) × [i, i+1) and is
    sampled at its centre. Pixels whose centre falls outside ``box`` get 0 ("no evidence").
    """
    x0, y0, x1, y1 = window
    cols = _axis_weights(values.shape[1], box[0], box[2], x0, x1)
    rows = _axis_weights(values.shape[0], box[1], box[3], y0, y1)
    i0, i1, fi, inside_r = rows
    j0, j1, fj, inside_c = cols
    v = values.astype(np.float32, copy=False)
    # Separable: interpolate along x for every map row, then along y.
    across = v[:, j0] * (1.0 - fj) + v[:, j1] * fj  # (h, x1 - x0)
    out = across[i0] * (1.0 - fi)[:, None] + across[i1] * fi[:, None]  # (y1 - y0, x1 - x0)
    out[~inside_r, :] = 0.0
    out[:, ~inside_c] = 0.0
    return out


def _axis_weights(
    n: int, start: float, stop: float, p0: int, p1: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    centres = np.arange(p0, p1, dtype=np.float64) + 0.5
    u = (centres - start) * (n / (stop - start)) - 0.5  # in map pixel indices
    inside = (centres >= start) & (centres < stop)
    u = np.clip(u, 0.0, n - 1)
    lo = np.floor(u).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    frac = (u - lo).astype(np.float32)
    return lo, hi, frac, inside


def _check_box(crop_box: Box | None, width: int, height: int) -> Box:
    if crop_box is None:
        return (0.0, 0.0, float(width), float(height))
    try:
        left, top, right, bottom = (float(v) for v in crop_box)
    except (TypeError, ValueError):
        raise InputError(
            f"crop_box must be (left, top, right, bottom), got {crop_box!r}",
            "use model.preprocess.crop_box(width, height)",
        ) from None
    if not (right > left and bottom > top) or not all(map(math.isfinite, (left, top, right, bottom))):
        raise InputError(
            f"crop_box {crop_box!r} is empty or not finite",
            "use model.preprocess.crop_box(width, height)",
        )
    return (left, top, right, bottom)


def _span(start: float, stop: float, size: int) -> tuple[int, int]:
    """Whole pixels whose centres may fall in [start, stop), clipped to the photo."""
    return max(0, math.floor(start)), min(size, math.ceil(stop))
