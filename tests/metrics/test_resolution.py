"""Effective resolution: known spectra give known detail sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from saliscope.metrics.resolution import effective_resolution


def _upsampled(grid: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 1, grid, grid, generator=g), size=size, mode="bilinear", align_corners=False)


def test_white_noise_has_single_pixel_detail() -> None:
    noise = torch.randn(1, 1, 128, 128, generator=torch.Generator().manual_seed(1))
    assert effective_resolution(noise).detail_px.item() == pytest.approx(1.0)


@pytest.mark.parametrize("grid", [7, 14, 28])
def test_upsampled_layer_map_has_detail_near_its_cell(grid: int) -> None:
    # A map upsampled from a grid x grid layer has no detail finer than about one cell (224 / grid px).
    detail = effective_resolution(_upsampled(grid)).detail_px.item()
    assert 0.6 * 224 / grid < detail < 1.2 * 224 / grid


def test_coarser_maps_have_larger_detail_and_offset_does_not_count() -> None:
    sizes = [effective_resolution(_upsampled(g)).detail_px.item() for g in (56, 28, 14, 7)]
    assert sizes == sorted(sizes)
    m = _upsampled(14)
    assert effective_resolution(m + 5.0).detail_px.item() == pytest.approx(effective_resolution(m).detail_px.item())


def test_a_single_sinusoid_gives_its_half_period() -> None:
    x = torch.arange(64, dtype=torch.float64)
    wave = torch.cos(2 * torch.pi * x / 16)[None, None, None, :].expand(1, 1, 64, 64)
    assert effective_resolution(wave).detail_px.item() == pytest.approx(8.0)


def test_flat_map_has_no_detail_and_batch_equals_alone() -> None:
    flat = torch.full((1, 1, 32, 48), 3.0)
    assert effective_resolution(flat).detail_px.item() == 48.0
    batch = torch.cat([_upsampled(7, 64), torch.randn(1, 1, 64, 64), _upsampled(14, 64)])
    together = effective_resolution(batch).detail_px
    alone = torch.cat([effective_resolution(batch[i : i + 1]).detail_px for i in range(3)])
    assert torch.equal(together, alone)


def test_energy_share_is_checked() -> None:
    with pytest.raises(ValueError, match="energy_share"):
        effective_resolution(torch.zeros(1, 1, 8, 8), energy_share=1.0)
