"""ROAD: the noisy linear imputation reproduces planes and the paper's weights; MoRF / LeRF on a known model."""

from __future__ import annotations

import json

import pytest
import torch
from faithfulness_models import BlockReader, block_image, block_mask

from saliscope import metrics
from saliscope.core.errors import InputError
from saliscope.metrics.road import noisy_linear_imputation


def plane(c: int, h: int, w: int) -> torch.Tensor:
    """``(c, h, w)`` float64: channel k is ``a_k * col + b_k * row + c_k``."""
    rows = torch.arange(h, dtype=torch.float64)[:, None]
    cols = torch.arange(w, dtype=torch.float64)[None, :]
    coef = torch.tensor([[0.3, -1.2, 2.0], [-0.7, 0.4, -1.0]], dtype=torch.float64)[:c]
    return torch.stack([a * cols + b * rows + k for a, b, k in coef])


def test_imputation_reproduces_a_plane_without_noise():
    image = plane(2, 12, 14)
    removed = torch.rand(12, 14, generator=torch.Generator().manual_seed(0)) < 0.6
    removed[4:9, 3:10] = True  # a solid hole, filled from its rim only
    removed[0, :] = removed[-1, :] = removed[:, 0] = removed[:, -1] = False  # interior pixels only
    # A symmetric 8-neighbour mean reproduces any linear function, so the plane solves every equation;
    # the system is non-singular, so the plane is *the* solution.
    filled = noisy_linear_imputation(image, removed, noise=0.0)
    torch.testing.assert_close(filled, image, atol=1e-9, rtol=0)


def test_one_removed_pixel_is_the_papers_weighted_mean_of_its_neighbours():
    image = torch.randn(1, 5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    removed = torch.zeros(5, 5, dtype=torch.bool)
    removed[2, 2] = True
    direct = image[0, 1, 2] + image[0, 3, 2] + image[0, 2, 1] + image[0, 2, 3]
    diagonal = image[0, 1, 1] + image[0, 1, 3] + image[0, 3, 1] + image[0, 3, 3]
    filled = noisy_linear_imputation(image, removed, noise=0.0)
    assert float(filled[0, 2, 2]) == pytest.approx(float(direct / 6 + diagonal / 12))
    # At a corner only 3 neighbours exist: their weights are renormalised (1/6, 1/6, 1/12 → 2/5, 2/5, 1/5).
    corner = torch.zeros(5, 5, dtype=torch.bool)
    corner[0, 0] = True
    filled = noisy_linear_imputation(image, corner, noise=0.0)
    expected = 0.4 * image[0, 0, 1] + 0.4 * image[0, 1, 0] + 0.2 * image[0, 1, 1]
    assert float(filled[0, 0, 0]) == pytest.approx(float(expected))
    assert torch.equal(filled[:, ~corner], image[:, ~corner])


def test_noise_lands_on_removed_pixels_only_and_is_seeded():
    image = plane(3, 10, 10).float()
    removed = torch.zeros(10, 10, dtype=torch.bool)
    removed[3:7, 3:7] = True
    noisy = noisy_linear_imputation(image, removed, noise=0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(noisy[:, ~removed], image[:, ~removed]) and noisy.dtype == torch.float32
    deviation = (noisy - image)[:, removed]
    assert 0.3 < float(deviation.std()) < 0.7  # the plane is reproduced; what is left is N(0, 0.5²)
    again = noisy_linear_imputation(image, removed, noise=0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(noisy, again)
    with pytest.raises(InputError, match="every pixel"):
        noisy_linear_imputation(image, torch.ones(10, 10, dtype=torch.bool))


def test_road_on_the_block_reader_is_known():
    # Channel 0 is 1 on the block and 0 around it. MoRF removes the block first and imputes it from its
    # zero rim: score 0. LeRF removes map-zero pixels only (at most 90% < 1 - 64/1024), so the block stays.
    x, perfect = block_image(2), block_mask(2)
    result = metrics.road(BlockReader(), x, perfect, target=0, noise=0.0, space="logit")
    assert result.percentages.tolist() == [10, 20, 30, 40, 50, 60, 70, 80, 90]
    torch.testing.assert_close(result.morf, torch.zeros(2, 9), atol=1e-6, rtol=0)
    torch.testing.assert_close(result.lerf, torch.ones(2, 9), atol=1e-6, rtol=0)
    assert result.gap.tolist() == pytest.approx([1.0, 1.0], abs=1e-6) and result.higher_is_better
    inverted = metrics.road(BlockReader(), x, -perfect, target=0, noise=0.0, space="logit")
    assert inverted.gap.tolist() == pytest.approx([-1.0, -1.0], abs=1e-6)
    assert result.cost.forward_passes == 2 + 2 * 2 * 9
    json.dumps(result.as_dict())


def test_road_checks_its_arguments():
    model, x, sal = BlockReader(), block_image(), block_mask()
    for kwargs, words in [
        ({"percentages": (10, 100)}, "percentage"),
        ({"percentages": ()}, "no percentages"),
        ({"noise": -1.0}, "noise"),
        ({"percentages": (-5,)}, "percentage"),
    ]:
        with pytest.raises(InputError, match=words):
            metrics.road(model, x, sal, **kwargs)
