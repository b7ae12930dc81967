"""Effective resolution: how fine the detail of a map is, in input pixels.

A Grad-CAM read at a 7 × 7 layer and upsampled to 224 × 224 has 224 × 224 values but no detail finer than
about 32 pixels; a raw gradient map has detail down to single pixels. Counting pixels says nothing about
that; the map's spatial spectrum does. We take the radial frequency ``f90`` (cycles per pixel) below which
90% of the map's spectral energy lies (mean removed, so a constant offset does not count) and report the
half-period ``1 / (2 · f90)``: the size of the finest detail that carries a real share of the map. It is
1 px for white noise, about ``H / grid`` for a map upsampled from a ``grid × grid`` layer, and ``H`` (no
detail) for a flat map.

This is our definition (for the comparison chart), in the spirit of the "resolution" axis of saliency
surveys; it is not from a paper. Lower is finer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from ..core.validation import real
from ._common import Attribution, saliency_map


@dataclass(frozen=True)
class Resolution:
    """``detail_px (B,)``: the finest detail size in pixels; ``f90 (B,)``: its frequency in cycles/pixel."""

    detail_px: Tensor
    f90: Tensor
    energy_share: float
    higher_is_better: ClassVar[bool] = False

    @property
    def value(self) -> Tensor:
        return self.detail_px

    def as_dict(self) -> dict[str, list[float] | float]:
        return {"detail_px": self.detail_px.tolist(), "f90": self.f90.tolist(), "energy_share": self.energy_share}


def effective_resolution(attribution: Attribution, *, energy_share: float = 0.9) -> Resolution:
    """The finest detail carrying ``1 - energy_share`` of a map's spectral energy, per sample.

    Args:
        attribution: an Explanation or a ``(B, 1|C, H, W)`` map (channels summed).
        energy_share: the share of spectral energy (mean removed) below the cut-off frequency.

    Returns:
        :class:`Resolution` with ``detail_px = 1 / (2 · f90)`` clipped to ``[1, max(H, W)]``.
    """
    energy_share = real("energy_share", energy_share, "use e.g. energy_share=0.9", above=0, below=1)
    m = saliency_map(attribution)[:, 0].double()
    b, h, w = m.shape
    m = m - m.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.rfft2(m).abs().square()  # (B, H, W//2+1)
    # rfft2 keeps half the columns: every column but the first (and the Nyquist one, for even W) stands
    # for two conjugate frequencies, so it counts twice in the energy.
    weight = torch.full((w // 2 + 1,), 2.0, dtype=m.dtype, device=m.device)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    fy = torch.fft.fftfreq(h, device=m.device, dtype=m.dtype)[:, None]
    fx = torch.fft.rfftfreq(w, device=m.device, dtype=m.dtype)[None, :]
    radius = torch.sqrt(fy.square() + fx.square()).reshape(-1)
    order = torch.argsort(radius)
    energy = (power * weight).reshape(b, -1)[:, order]
    total = energy.sum(1, keepdim=True)
    cumulative = energy.cumsum(1) / total.clamp_min(torch.finfo(m.dtype).tiny)
    index = (cumulative < energy_share).sum(1).clamp(max=radius.numel() - 1)
    f90 = radius[order][index]
    largest = float(max(h, w))
    detail = (1.0 / (2.0 * f90.clamp_min(1e-12))).clamp(1.0, largest)
    detail = torch.where(total[:, 0] > 0, detail, torch.full_like(detail, largest))
    return Resolution(detail.float(), f90.float(), energy_share)
