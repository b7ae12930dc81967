"""How alike two saliency maps are: rank correlation, structural similarity, overlap of the top pixels.

Pure functions of two batches of maps ``(B, H, W)`` or ``(B, 1, H, W)`` (multi-channel maps: reduce the
channels first, e.g. with ``Explanation.saliency``); each returns one value per sample ``(B,)``, float64
on the CPU. They serve the sanity checks (Adebayo et al. 2018, "Sanity Checks for Saliency Maps", who
compare maps by Spearman rank correlation and SSIM) and the consistency metric (IoU of the top-k pixels).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..core.errors import InputError


def as_maps(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Two batches of maps as float64 CPU tensors ``(B, H, W)``, checked to have the same shape."""
    out = []
    for t in (a, b):
        if not isinstance(t, Tensor):
            raise InputError(f"expected a tensor map, got {type(t).__name__}", "pass (B, H, W) or (B, 1, H, W) maps")
        if t.ndim == 4 and t.shape[1] == 1:
            t = t[:, 0]
        if t.ndim != 3:
            raise InputError(
                f"maps must be (B, H, W) or (B, 1, H, W), got {tuple(t.shape)}",
                "reduce the channels first, e.g. explanation.saliency()",
            )
        out.append(t.detach().to("cpu", torch.float64))
    if out[0].shape != out[1].shape:
        raise InputError(
            f"the two batches of maps differ in shape: {tuple(out[0].shape)} vs {tuple(out[1].shape)}",
            "compare maps of the same images at the same size",
        )
    return out[0], out[1]


def _flat(maps: Tensor) -> Tensor:
    return maps.reshape(maps.shape[0], -1)


def _is_flat(flat: Tensor) -> Tensor:
    return (flat == flat[:, :1]).all(1)


def average_ranks(values: Tensor) -> Tensor:
    """``(B, N)`` float64 → ``(B, N)``: each value's rank in its row, 1 … N, ties sharing their average rank
    (what ``scipy.stats.rankdata`` gives, without importing scipy.stats, which costs most of a second). A row
    holding a NaN ranks as all NaN."""
    order = torch.argsort(values, dim=1, stable=True)
    ordered = values.gather(1, order)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    group = starts.long().cumsum(1) - 1  # the tie group of each sorted position
    position = torch.arange(1, values.shape[1] + 1, dtype=torch.float64).expand_as(ordered)
    total = torch.zeros_like(position).scatter_add_(1, group, position)
    size = torch.zeros_like(position).scatter_add_(1, group, torch.ones_like(position))
    ranks = torch.empty_like(position).scatter_(1, order, (total / size.clamp(min=1)).gather(1, group))
    return torch.where(values.isnan().any(1, keepdim=True), torch.full_like(ranks, math.nan), ranks)


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """``(B,)`` Spearman rank correlation between the pixels of ``a[i]`` and ``b[i]``.

    Ties share their average rank. A flat map ranks nothing, so its correlation is 0 — except with an
    identical flat map, which is 1 (no ranking was lost).
    """
    a, b = as_maps(a, b)
    fa, fb = _flat(a), _flat(b)
    ra, rb = average_ranks(fa), average_ranks(fb)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denom = (ra.pow(2).sum(1) * rb.pow(2).sum(1)).sqrt()
    rho = (ra * rb).sum(1) / denom.clamp(min=torch.finfo(torch.float64).tiny)
    flat = _is_flat(fa) | _is_flat(fb)
    same = (fa == fb).all(1)
    return torch.where(flat, same.double(), rho.clamp(-1.0, 1.0))


def _unit_range(maps: Tensor) -> Tensor:
    lo = maps.amin((1, 2), keepdim=True)
    span = maps.amax((1, 2), keepdim=True) - lo
    return torch.where(span > 0, (maps - lo) / span.clamp(min=torch.finfo(torch.float64).tiny), torch.zeros_like(maps))


def ssim(a: Tensor, b: Tensor) -> Tensor:
    """``(B,)`` structural similarity (Wang et al. 2004) of ``a[i]`` and ``b[i]``, via scikit-image.

    Each map is first scaled to [0, 1] by its own min and max: SSIM depends on scale, and the scale of a
    map says nothing about its structure (randomising a model changes gradient magnitudes by orders of
    magnitude). scikit-image's default 7×7 window, narrowed to the largest odd size that fits small maps.
    """
    from skimage.metrics import structural_similarity

    a, b = as_maps(a, b)
    side = min(a.shape[-2:])
    if side < 3:
        raise InputError(f"maps of {tuple(a.shape[-2:])} pixels are too small for SSIM", "use maps of at least 3×3")
    window = min(7, side if side % 2 else side - 1)
    ua, ub = _unit_range(a).numpy(), _unit_range(b).numpy()
    values = [structural_similarity(x, y, data_range=1.0, win_size=window) for x, y in zip(ua, ub, strict=True)]
    return torch.tensor(np.asarray(values, dtype=np.float64))


def check_percent(name: str, k: float) -> float:
    """``k`` must be a percentage in (0, 100]."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k <= 100:
        raise InputError(
            f"{name} must be a percentage in (0, 100], got {k!r}", f"pass e.g. {name}=10 for the top 10 % of pixels"
        )
    return float(k)


def top_k_mask(maps: Tensor, k: float) -> Tensor:
    """``(B, N)`` bool: the top ``k`` % of each flattened map's pixels (rounded half up, at least one).

    Ties are broken by position (a stable sort, raster order), so the choice is deterministic.
    """
    check_percent("k", k)
    flat = _flat(maps)
    count = max(1, math.floor(k / 100 * flat.shape[1] + 0.5))
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :count]
    mask = torch.zeros_like(flat, dtype=torch.bool)
    return mask.scatter_(1, order, True)


def top_k_overlap(a: Tensor, b: Tensor, *, k: float = 10.0) -> Tensor:
    """``(B,)`` intersection over union of the top ``k`` % of pixels of ``a[i]`` and of ``b[i]``.

    Pixels are ranked by the map's values as given: pass ``abs()`` maps to rank by magnitude. (For the
    IoU of a map's top pixels with a ground-truth region, see :func:`saliscope.metrics.top_k_iou`.)
    """
    a, b = as_maps(a, b)
    ma, mb = top_k_mask(a, k), top_k_mask(b, k)
    return (ma & mb).sum(1).double() / (ma | mb).sum(1).double()


def evidence_maps(attributions: Tensor, evidence: str) -> Tensor:
    """``(B, 1, H, W)`` map compared by the robustness and sanity metrics, from ``(B, C, H, W)`` attributions.

    ``"absolute"``: the sum over channels of |attribution| (Adebayo et al. 2018's absolute-value maps);
    ``"signed"``: the plain sum over channels (their "diverging" maps).
    """
    if evidence == "absolute":
        return attributions.detach().float().abs().sum(1, keepdim=True)
    if evidence == "signed":
        return attributions.detach().float().sum(1, keepdim=True)
    raise InputError(f"unknown evidence {evidence!r}", "use 'absolute' or 'signed'")
