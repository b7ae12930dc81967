"""Map similarity: checked against scipy / scikit-image called directly, and hand-counted overlaps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, spearmanr
from skimage.metrics import structural_similarity

from saliscope.core.errors import InputError
from saliscope.metrics.similarity import average_ranks, evidence_maps, spearman, ssim, top_k_overlap


def maps(seed: int, b: int = 3, h: int = 9, w: int = 11) -> torch.Tensor:
    return torch.randn(b, 1, h, w, generator=torch.Generator().manual_seed(seed))


def test_spearman_matches_scipy_also_with_ties():
    a, b = maps(0), maps(1)
    a[0, 0, :3] = 0.0  # ties share their average rank
    b = b.round(decimals=0)  # many ties
    expected = [spearmanr(x.flatten(), y.flatten()).statistic for x, y in zip(a, b, strict=True)]
    assert spearman(a, b).tolist() == pytest.approx(expected, abs=1e-12)


def test_average_ranks_match_scipy_with_ties_and_nan_rows():
    g = torch.Generator().manual_seed(4)
    for values in (torch.randn(3, 40, generator=g), torch.randint(0, 4, (5, 30), generator=g), torch.zeros(2, 1)):
        values = values.double()
        expected = torch.from_numpy(rankdata(values.numpy(), axis=1))
        assert torch.equal(average_ranks(values), expected)
    ranks = average_ranks(torch.tensor([[2.0, math.nan, 1.0], [3.0, 1.0, 1.0]], dtype=torch.float64))
    assert ranks[0].isnan().all() and ranks[1].tolist() == [3.0, 1.5, 1.5]


def test_spearman_is_one_for_a_monotone_transform_and_minus_one_reversed():
    a = maps(2)
    assert spearman(a, a.exp() * 3).tolist() == pytest.approx([1.0] * 3)
    assert spearman(a, -a).tolist() == pytest.approx([-1.0] * 3)
    assert spearman(a[:, 0], a).tolist() == pytest.approx([1.0] * 3)  # (B, H, W) and (B, 1, H, W) alike


def test_a_flat_map_shares_no_ranking_except_with_itself():
    a = maps(3, b=2)
    flat = torch.zeros_like(a)
    assert spearman(a, flat).tolist() == [0.0, 0.0]
    assert spearman(flat, flat).tolist() == [1.0, 1.0]


def test_ssim_matches_scikit_image_on_unit_range_maps_and_ignores_scale():
    a, b = maps(4), maps(5)

    def unit(t):
        t = t.double().numpy()
        return (t - t.min()) / (t.max() - t.min())

    expected = [structural_similarity(unit(x[0]), unit(y[0]), data_range=1.0) for x, y in zip(a, b, strict=True)]
    assert ssim(a, b).tolist() == pytest.approx(expected, abs=1e-12)
    assert ssim(a, a.double() * 1e-6 + 4).tolist() == pytest.approx([1.0] * 3)
    small = maps(6, h=4, w=5)  # the window shrinks to 3×3 for tiny maps
    assert ssim(small, small).tolist() == pytest.approx([1.0] * 3)


def test_top_k_overlap_counts_the_shared_top_pixels():
    a = torch.tensor([[[9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0]]])
    b = torch.tensor([[[9.0, 0, 7, 6, 5, 4, 3, 2, 1, 8]]])
    # top 20 %: a → {0, 1}, b → {0, 9}: 1 shared of 3
    assert top_k_overlap(a, b, k=20).tolist() == pytest.approx([1 / 3])
    # top 40 %: a → {0, 1, 2, 3}, b → {0, 9, 2, 3}: 3 of 5
    assert top_k_overlap(a, b, k=40).tolist() == pytest.approx([3 / 5])
    assert top_k_overlap(a, a, k=10).tolist() == [1.0]
    ties = torch.zeros(1, 1, 10)
    assert top_k_overlap(ties, ties.clone(), k=30).tolist() == [1.0]  # ties broken by position, the same way


def test_top_k_overlap_matches_a_slow_count():
    a, b = maps(7), maps(8)
    out = top_k_overlap(a, b, k=25)
    for i in range(3):
        n = round(0.25 * 99)
        top_a = set(np.argsort(-a[i].flatten().numpy(), kind="stable")[:n])
        top_b = set(np.argsort(-b[i].flatten().numpy(), kind="stable")[:n])
        assert float(out[i]) == pytest.approx(len(top_a & top_b) / len(top_a | top_b))


def test_evidence_maps_sum_absolute_or_signed_channels():
    a = torch.tensor([[[[1.0]], [[-3.0]], [[0.5]]]])
    assert evidence_maps(a, "absolute").item() == 4.5
    assert evidence_maps(a, "signed").item() == -1.5
    with pytest.raises(InputError, match="evidence"):
        evidence_maps(a, "positive")


def test_bad_shapes_and_k_are_clear_errors():
    with pytest.raises(InputError, match="differ in shape"):
        spearman(maps(0), maps(1, h=8))
    with pytest.raises(InputError, match="reduce the channels"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(InputError, match="percentage"):
        top_k_overlap(maps(0), maps(1), k=0)
    with pytest.raises(InputError, match="too small"):
        ssim(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))
