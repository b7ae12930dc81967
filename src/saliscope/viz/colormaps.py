"""Maps as colours: which colormap, how a saliency map becomes a normalised 2-D array, and RGBA.

Signed maps use a diverging colormap centred on 0 (blue = evidence against the class, red = for it);
unsigned maps a perceptually uniform sequential one. Opacity grows with |value|, so where a method
sees no evidence the photo shows through untouched instead of under a uniform tint.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import Colormap
from torch import Tensor

from ..core.errors import InputError
from ..core.views import DEFAULT_ALPHA, normalize

SIGNED_CMAP = "RdBu_r"
UNSIGNED_CMAP = "inferno"
OPACITY_GAMMA = 0.5  # opacity = alpha * |value| ** gamma: faint evidence stays visible, none stays clear
_LUT_SIZE = 256  # colour steps; a lookup table keeps a 12-megapixel overlay at uint8/float32 cost

MapLike = Tensor | np.ndarray


def get_cmap(cmap: str | Colormap | None, signed: bool) -> Colormap:
    """The colormap to use: ``cmap`` when given, else the default for signed / unsigned maps."""
    if isinstance(cmap, Colormap):
        return cmap
    name = cmap or (SIGNED_CMAP if signed else UNSIGNED_CMAP)
    try:
        return colormaps[name]
    except KeyError:
        raise InputError(
            f"unknown colormap {name!r}",
            "use a matplotlib colormap name, e.g. 'RdBu_r' (signed) or 'inferno' (unsigned)",
        ) from None


def as_map(saliency: MapLike) -> Tensor:
    """A saliency map shaped (H, W), (1, H, W) or (1, 1, H, W) → float32 CPU tensor (H, W)."""
    t = torch.as_tensor(saliency) if isinstance(saliency, np.ndarray) else saliency
    if not isinstance(t, Tensor):
        raise InputError(
            f"a saliency map must be a tensor or numpy array, got {type(saliency).__name__}",
            "pass e.saliency()[i] of an Explanation e",
        )
    shape = tuple(t.shape)
    while t.ndim > 2 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 2:
        raise InputError(
            f"a saliency map must be (H, W), (1, H, W) or (1, 1, H, W), got {shape}",
            "reduce the channels and pick one image first, e.g. e.saliency('sum')[i]",
        )
    t = t.detach().to("cpu", torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise InputError("the saliency map contains NaN or Inf", "check the explanation that produced it")
    return t


def normalized_map(
    saliency: MapLike, *, signed: bool | None = None, percentile: float = 99.0, vmax: float | None = None
) -> tuple[np.ndarray, bool]:
    """Robustly scaled map (H, W) in [-1, 1] (signed) or [0, 1], and whether it is shown signed.

    ``signed=None`` shows the map signed when it has negative values. ``vmax`` fixes the scale (values
    divided by it and clipped) instead of the map's own ``percentile``, so maps shown side by side share it.
    """
    m = as_map(saliency)
    if signed is None:
        signed = bool((m < 0).any())
    if vmax is not None:
        if not vmax > 0:
            raise InputError(f"vmax must be > 0, got {vmax}", "pass the value that should get full colour")
        return (m / vmax).clamp(-1.0 if signed else 0.0, 1.0).numpy(), signed
    scaled = normalize(m[None, None], percentile=percentile, signed=signed)[0, 0]
    return scaled.numpy(), signed


def colorize(
    values: np.ndarray, *, signed: bool, cmap: str | Colormap | None = None, alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """Normalised values (H, W) → float32 RGBA (H, W, 4) with opacity ``alpha * |value| ** OPACITY_GAMMA``.

    Saliency maps are heavy-tailed: with opacity linear in the value, most of the evidence would be
    nearly invisible next to the strongest pixels; the square root keeps it readable.
    """
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}", "use e.g. alpha=0.8")
    lut = get_cmap(cmap, signed)(np.linspace(0.0, 1.0, _LUT_SIZE)).astype(np.float32)
    v = np.asarray(values, dtype=np.float32)
    position = (v + 1.0) / 2.0 if signed else v
    index = np.clip(np.rint(position * (_LUT_SIZE - 1)), 0, _LUT_SIZE - 1).astype(np.intp)
    rgba = lut[index]
    rgba[..., 3] = alpha * np.clip(np.abs(v), 0.0, 1.0) ** OPACITY_GAMMA
    return rgba
