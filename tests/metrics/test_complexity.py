"""Complexity metrics: closed forms for one-hot, constant and uniform maps, and a slow pairwise Gini."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_models import SmallCNN

import saliscope as ss
from saliscope import metrics
from saliscope.core.views import FlatMapWarning


def slow_gini(values: list[float]) -> float:
    """Mean absolute difference over all ordered pairs / (2 * mean): the textbook Gini."""
    n, mean = len(values), sum(values) / len(values)
    return sum(abs(a - b) for a in values for b in values) / (2 * n * n * mean)


def test_gini_closed_forms():
    n = 36
    one_hot = torch.zeros(2, 1, 6, 6)
    one_hot[0, 0, 2, 3] = 5.0
    one_hot[1, 0, 0, 0] = -2.0  # magnitudes: the sign does not matter
    # Sorted ascending, only a_n is non-zero: (2n - n - 1) a_n / (n a_n) = (n - 1) / n.
    assert metrics.sparseness(one_hot).gini.tolist() == pytest.approx([1 - 1 / n] * 2)
    assert metrics.sparseness(torch.full((1, 1, 6, 6), 0.3)).gini.tolist() == pytest.approx([0.0], abs=1e-7)
    small = torch.tensor([0.0, 0.0, 1.0, 3.0]).view(1, 1, 2, 2)
    assert metrics.sparseness(small).gini.tolist() == pytest.approx([0.625])  # 10 / (4 * 4)


def test_gini_equals_the_pairwise_definition():
    sal = torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    result = metrics.sparseness(sal)
    expected = [slow_gini(sal[i].sum(0).abs().flatten().tolist()) for i in range(3)]
    assert result.gini.tolist() == pytest.approx(expected, rel=1e-5)
    assert result.higher_is_better
    json.dumps(result.as_dict())


def test_entropy_closed_forms():
    n = 64
    uniform = metrics.entropy(torch.ones(1, 1, 8, 8))
    assert uniform.entropy.tolist() == pytest.approx([math.log(n)])
    assert uniform.max_entropy == pytest.approx(math.log(n))
    one_hot = torch.zeros(1, 1, 8, 8)
    one_hot[0, 0, 3, 3] = -4.0
    assert metrics.entropy(one_hot).entropy.tolist() == pytest.approx([0.0], abs=1e-7)
    two = torch.zeros(1, 1, 8, 8)
    two[0, 0, 0, :2] = torch.tensor([1.0, -1.0])
    assert metrics.entropy(two).entropy.tolist() == pytest.approx([math.log(2)])
    p = torch.tensor([0.5, 0.25, 0.25, 0.0])
    assert metrics.entropy(p.view(1, 1, 2, 2) * 8).entropy.tolist() == pytest.approx([1.5 * math.log(2)])
    assert not uniform.higher_is_better


def test_zero_maps_give_nan_with_a_warning_and_explanations_are_accepted():
    with pytest.warns(FlatMapWarning, match="zero everywhere"):
        gini = metrics.sparseness(torch.zeros(1, 1, 4, 4))
    with pytest.warns(FlatMapWarning):
        h = metrics.entropy(torch.zeros(1, 1, 4, 4))
    assert gini.gini.isnan().all() and h.entropy.isnan().all() and gini.as_dict()["gini"] == [None]
    e = ss.Gradient(SmallCNN().eval()).explain(torch.randn(2, 3, 8, 8))
    assert metrics.sparseness(e).gini.shape == (2,) and metrics.entropy(e).entropy.shape == (2,)
