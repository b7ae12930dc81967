"""Localisation metrics on planted peaks with known answers."""

from __future__ import annotations

import json

import pytest
import torch

from saliscope import metrics
from saliscope.core.errors import InputError
from saliscope.core.views import FlatMapWarning
from saliscope.metrics.localisation import region_mask


def peak_map(b: int, row: int, col: int, h: int = 10, w: int = 12) -> torch.Tensor:
    sal = torch.rand(b, 1, h, w, generator=torch.Generator().manual_seed(0)) * 0.5
    sal[:, :, row, col] = 3.0
    return sal


def test_boxes_cover_pixels_whose_centres_are_inside():
    mask = region_mask(torch.tensor([[2, 1, 4, 4], [0, 0, 12, 10]]), (2, 10, 12))
    assert mask[0].nonzero().tolist() == [[r, c] for r in (1, 2, 3) for c in (2, 3)]
    assert bool(mask[1].all())
    cut = region_mask(torch.tensor([[2.6, 1.0, 4.0, 4.0]]), (1, 10, 12))[0]  # column 2's centre 2.5 < 2.6
    assert torch.equal(cut, mask[0] & (torch.arange(12) >= 3))


def test_pointing_game_hits_and_misses_a_planted_peak():
    sal = peak_map(3, 4, 7)
    mask = torch.zeros(3, 10, 12, dtype=torch.bool)
    mask[0, 3:6, 6:9] = True  # around the peak: hit
    mask[1, 0:2, 0:2] = True  # far away: miss
    mask[2, 4, 10] = True  # 3 pixels right of the peak: a miss, a hit with tolerance 3
    strict = metrics.pointing_game(sal, mask)
    assert strict.hits.tolist() == [True, False, False] and strict.peaks.tolist() == [[4, 7]] * 3
    assert strict.accuracy == pytest.approx(1 / 3)
    assert metrics.pointing_game(sal, mask, tolerance=2.9).hits.tolist() == [True, False, False]
    assert metrics.pointing_game(sal, mask, tolerance=3).hits.tolist() == [True, False, True]
    box = metrics.pointing_game(sal[:1], torch.tensor([[7, 4, 8, 5]]))  # exactly the peak pixel
    assert box.hits.tolist() == [True]
    json.dumps(strict.as_dict())


def test_pointing_game_ties_go_to_the_first_pixel_in_raster_order():
    sal = torch.zeros(1, 1, 4, 4)
    sal[0, 0, 1, 2] = sal[0, 0, 3, 0] = 1.0
    assert metrics.pointing_game(sal, torch.tensor([[2, 1, 3, 2]])).peaks.tolist() == [[1, 2]]


def test_energy_pointing_game_is_the_positive_share_inside():
    sal = torch.zeros(2, 1, 6, 6)
    sal[:, 0, 1, 1] = 3.0  # inside the box
    sal[:, 0, 4, 4] = 1.0  # outside
    sal[:, 0, 5, 5] = -10.0  # negative evidence: not counted anywhere
    result = metrics.energy_pointing_game(sal, torch.tensor([[0, 0, 3, 3], [3, 3, 6, 6]]))
    assert result.energy.tolist() == pytest.approx([0.75, 0.25])
    assert result.region_fraction.tolist() == pytest.approx([0.25, 0.25])
    uniform = metrics.energy_pointing_game(torch.ones(1, 1, 6, 6), torch.tensor([[0, 0, 3, 3]]))
    assert uniform.energy.tolist() == pytest.approx([0.25])  # a uniform map scores the region's share
    with pytest.warns(FlatMapWarning, match="no positive evidence"):
        none = metrics.energy_pointing_game(-torch.ones(1, 1, 6, 6), torch.tensor([[0, 0, 3, 3]]))
    assert none.energy.isnan().all() and none.as_dict()["energy"] == [None]


def test_top_k_iou_on_a_planted_region():
    sal = torch.zeros(1, 1, 4, 4)
    sal[0, 0, 0, :] = torch.tensor([4.0, 3.0, 2.0, 1.0])  # top 4 pixels: row 0
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, 2:] = mask[0, 1, 2:] = True  # 4 pixels, 2 of them in row 0
    result = metrics.top_k_iou(sal, mask)  # k = the region's own area, 25%
    assert result.iou.tolist() == pytest.approx([2 / 6]) and result.k.tolist() == [25.0]
    assert metrics.top_k_iou(sal, mask, k=12.5).iou.tolist() == pytest.approx([0 / 6])  # top 2: cols 0, 1
    perfect = metrics.top_k_iou(mask.float().unsqueeze(1), mask)
    assert perfect.iou.tolist() == [1.0]
    json.dumps(result.as_dict())


def test_localisation_errors_name_the_fix():
    sal = torch.rand(2, 1, 6, 6)
    empty = torch.zeros(2, 6, 6, dtype=torch.bool)
    empty[0, 0, 0] = True
    cases = [
        (lambda: metrics.pointing_game(sal, empty), "empty"),
        (lambda: metrics.pointing_game(sal, torch.ones(2, 5, 5, dtype=torch.bool)), "does not fit"),
        (lambda: metrics.pointing_game(sal, torch.full((2, 6, 6), 0.3)), "0 / 1"),
        (lambda: metrics.pointing_game(sal, torch.tensor([[0, 0, 3, 3]])), "one box per image"),
        (lambda: metrics.pointing_game(sal, torch.tensor([[0, 0, 3, 3], [4, 4, 2, 2]])), "empty"),
        (lambda: metrics.pointing_game(sal, torch.ones(2, 6)), "mask"),
        (lambda: metrics.pointing_game(sal, torch.ones(2, 6, 6), tolerance=-1), "tolerance"),
        (lambda: metrics.top_k_iou(sal, torch.ones(2, 6, 6), k=0), "percentage"),
        (lambda: metrics.energy_pointing_game(sal, [[0, 0, 3, 3]]), "tensor"),
    ]
    for call, words in cases:
        with pytest.raises(InputError, match=words) as info:
            call()
        assert info.value.fix
