"""audit_batch, the pure per-batch step, and the region arithmetic under it: exact values on hand-set models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from audit_models import PATCH, PIXELS, SIZE, Blind, PatchReader

from saliscope import GradCAM, Gradient
from saliscope.audit import audit_batch, standard_regions
from saliscope.audit.batch import mass_view, model_view
from saliscope.audit.regions import Region, grid_sums, place, region_masses, summed_area
from saliscope.core.errors import InputError


def batch(n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.1 + 0.9 * torch.rand(n, 3, SIZE, SIZE, generator=g)  # positive pixels: class 0 wins


def slow_masses(mass: np.ndarray, regions: tuple[Region, ...]) -> np.ndarray:
    """The obvious version: a boolean mask per region, summed."""
    h, w = mass.shape[-2:]
    out = []
    for r in regions:
        r0, r1, c0, c1 = r.pixels(h, w)
        inside = np.zeros((h, w), bool)
        inside[r0:r1, c0:c1] = True
        out.append((mass * (~inside if r.outside else inside)).sum((-2, -1)))
    return np.stack(out, -1)


def slow_grid(mass: np.ndarray, grid: int) -> np.ndarray:
    h, w = mass.shape[-2:]
    out = np.zeros((*mass.shape[:-2], grid, grid))
    for i in range(grid):
        for j in range(grid):
            out[..., i, j] = mass[..., i * h // grid : (i + 1) * h // grid, j * w // grid : (j + 1) * w // grid].sum(
                (-2, -1)
            )
    return out


def test_gradient_of_a_patch_reader_puts_all_mass_in_its_corner() -> None:
    model = PatchReader().eval()
    user = (0.0, 0.0, 3 / SIZE, 3 / SIZE)  # the patch's top-left 3×3 pixels: 9 of its 36
    regions = standard_regions(border=0.1, corner=0.3, user=user)
    result = audit_batch(Gradient(model), batch(), regions=regions, grid=16, preprocess=PIXELS)
    names = [r.name for r in result.regions]
    assert names == [
        "border",
        "top-left",
        "top-right",
        "bottom-left",
        "bottom-right",
        "top",
        "bottom",
        "left",
        "right",
        "region",
    ]
    m = dict(zip(names, result.masses[0].tolist(), strict=True))
    # The gradient is 1/3 on every channel of the 6×6 patch: an even map over the patch.
    assert m["top-left"] == pytest.approx(1.0, abs=1e-12)
    assert m["top-right"] == m["bottom-left"] == m["bottom-right"] == 0.0
    # The edges are 30% bands (10 px of 32): the 6×6 patch lies in the top and left ones.
    assert m["top"] == pytest.approx(1.0, abs=1e-12) and m["left"] == pytest.approx(1.0, abs=1e-12)
    assert m["bottom"] == m["right"] == 0.0
    # The border frame is 3 px wide (10% of 32, rounded): 36 - 3×3 interior patch pixels lie in it.
    assert m["border"] == pytest.approx(27 / 36, abs=1e-12)
    assert m["region"] == pytest.approx(9 / 36, abs=1e-12)
    # 2×2-pixel cells: the patch covers the 3×3 top-left cells, 4 of its 36 pixels each.
    expected = np.zeros((16, 16))
    expected[:3, :3] = 4 / 36
    np.testing.assert_allclose(result.maps.numpy(), np.broadcast_to(expected, (3, 16, 16)), atol=1e-12)
    assert result.classes.tolist() == [0, 0, 0] and not bool(result.flat.any())
    x = batch()
    x0, y0, x1, y1 = PATCH
    np.testing.assert_allclose(
        result.scores.numpy(), x[:, :, y0:y1, x0:x1].mean(1).sum((1, 2)).double().numpy(), rtol=1e-5
    )


def test_gradcam_mass_follows_the_patch_and_matches_the_slow_sums() -> None:
    model = PatchReader().eval()
    x = batch(4, seed=1)
    regions = standard_regions(user=(0.5, 0.25, 0.75, 1.0))
    result = audit_batch(GradCAM(model), x, regions=regions, grid=8)
    assert result.masses[:, 1].numpy() == pytest.approx(np.ones(4), abs=1e-12)  # top-left corner
    # Grad-CAM here is the channel mean on the patch: check every number against the obvious computation.
    cam = np.zeros((4, SIZE, SIZE))
    x0, y0, x1, y1 = PATCH
    cam[:, y0:y1, x0:x1] = x[:, :, y0:y1, x0:x1].mean(1).double().numpy()
    mass = cam / cam.sum((1, 2), keepdims=True)
    np.testing.assert_allclose(result.masses.numpy(), slow_masses(mass, regions), atol=1e-12)
    np.testing.assert_allclose(result.maps.numpy(), slow_grid(mass, 8), atol=1e-12)


def test_batched_equals_alone_and_the_input_and_model_are_left_alone() -> None:
    model = PatchReader()
    model.train()
    x = batch(3, seed=2)
    before = x.clone()
    regions = standard_regions()
    together = audit_batch(GradCAM(model), x, regions=regions, preprocess=PIXELS, view_size=8)
    for i in range(3):
        alone = audit_batch(GradCAM(model), x[i : i + 1], regions=regions, preprocess=PIXELS, view_size=8)
        # float32 convolutions round differently by batch size: equal up to float tolerance
        torch.testing.assert_close(alone.maps[0], together.maps[i], rtol=0, atol=1e-6)
        torch.testing.assert_close(alone.masses[0], together.masses[i], rtol=0, atol=1e-6)
    assert torch.equal(x, before)
    assert model.training and all(p.requires_grad and p.grad is None for p in model.parameters())
    # The model's view for the mean image: pixels, area-averaged 32 → 8.
    expected = x.reshape(3, 3, 8, 4, 8, 4).mean((3, 5))
    torch.testing.assert_close(together.pixels, expected, rtol=0, atol=1e-6)


def test_targets_pick_the_class_explained() -> None:
    model = PatchReader().eval()
    result = audit_batch(Gradient(model), batch(2), regions=standard_regions(), targets=[1, 0])
    assert result.classes.tolist() == [1, 0]
    assert bool(result.flat[0]) and not bool(result.flat[1])  # class 1's logit is constant: no evidence


def test_flat_maps_are_marked_not_measured() -> None:
    result = audit_batch(Gradient(Blind().eval()), batch(2), regions=standard_regions(), grid=4)
    assert result.flat.tolist() == [True, True]
    assert torch.isnan(result.masses).all()
    assert torch.equal(result.maps, torch.zeros(2, 4, 4, dtype=torch.float64))


def test_mass_view_keeps_non_negative_evidence() -> None:
    assert mass_view("gradcam") == ("sum", "positive")
    assert mass_view("integrated-gradients") == ("sum", "positive")  # signed → what raised the score
    assert mass_view("gradient") == ("max-abs", "absolute")
    with pytest.raises(InputError, match="non-negative"):
        mass_view("occlusion", "signed")


def test_regions_snap_to_pixels_and_tile_any_grid() -> None:
    regions = standard_regions(border=0.1, corner=0.3, user=(0.2, 0.1, 0.5, 0.9))
    assert [r.area(32, 32) for r in regions[:2]] == [1 - 26 * 26 / 1024, 100 / 1024]
    g = torch.Generator().manual_seed(3)
    raw = torch.rand(2, 30, 22, generator=g, dtype=torch.float64)  # sides not divisible by the grid
    mass = raw / raw.sum((1, 2), keepdim=True)
    table = summed_area(mass)
    np.testing.assert_allclose(region_masses(table, regions).numpy(), slow_masses(mass.numpy(), regions), atol=1e-12)
    cells = grid_sums(table, 16)
    np.testing.assert_allclose(cells.numpy(), slow_grid(mass.numpy(), 16), atol=1e-12)
    np.testing.assert_allclose(cells.sum((1, 2)).numpy(), [1.0, 1.0], atol=1e-12)
    with pytest.raises(InputError, match="finer than"):
        grid_sums(table, 40)


def test_bad_regions_and_places() -> None:
    with pytest.raises(InputError, match="not a box inside"):
        Region("r", (0.5, 0.0, 0.4, 1.0))
    with pytest.raises(InputError, match="four numbers"):
        Region("r", (0.1, 0.2))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="border width"):
        standard_regions(border=0.6)
    assert place((0.0, 0.0, 0.2, 0.2)) == "top-left"
    assert place((0.4, 0.4, 0.6, 0.6)) == "centre"
    assert place((0.4, 0.8, 0.6, 1.0)) == "bottom"


def test_model_view_downscales_keeping_the_aspect() -> None:
    x = PIXELS.normalize(torch.rand(1, 3, 32, 16))
    assert model_view(x, PIXELS, 8).shape == (1, 3, 8, 4)
    assert model_view(x, PIXELS, 64).shape == (1, 3, 32, 16)
