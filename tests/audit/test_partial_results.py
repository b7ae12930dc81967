"""Per-batch results as a distributed engine delivers them: keyed by batch, released in order, each batch
once; partial statistics over the classes a batch holds; and top images that do not depend on float noise."""

from __future__ import annotations

import numpy as np
import pytest

from saliscope.audit import AuditStats
from saliscope.audit.engines import InOrder
from saliscope.audit.stats import Ranked, TopN


def test_results_come_out_in_batch_order_each_batch_once() -> None:
    order: InOrder[str] = InOrder(5)
    assert order.offer(2, "c") == [] and order.offer(1, "b") == []
    assert order.missing() == [0, 3, 4]
    assert order.offer(0, "a") == [(0, "a"), (1, "b"), (2, "c")]
    # A retried batch delivers again: whether it is waiting or already out, the copy is dropped.
    assert order.offer(1, "b again") == [] and order.offer(4, "e") == [] and order.offer(4, "e again") == []
    assert order.duplicates == 2 and not order.done
    assert order.offer(3, "d") == [(3, "d"), (4, "e")] and order.done and order.missing() == []
    with pytest.raises(ValueError, match="not one of this run's batches"):
        order.offer(5, "f")


def test_partial_statistics_over_some_classes_merge_into_the_whole() -> None:
    rng = np.random.default_rng(3)
    classes = ["a", "b", "c"]
    images = [("abc"[i % 3], rng.random((4, 4)), rng.random(2), rng.random((3, 5, 5))) for i in range(12)]
    whole = AuditStats(classes, n_regions=2, grid=4)
    merged = AuditStats(classes, n_regions=2, grid=4)
    for start in range(0, 12, 2):  # batches of 2 images hold 2 of the 3 classes
        batch = images[start : start + 2]
        part = AuditStats([c for c in classes if c in {label for label, *_ in batch}], n_regions=2, grid=4)
        for label, grid_map, masses, pixels in batch:
            for stats in (whole, part):
                stats.add(label, grid_map=grid_map, masses=masses, pixels=pixels, correct=None)
        assert len(part.classes) == 2
        merged.merge(AuditStats.from_state(part.state()))  # as it travels home: plain arrays
    for name in classes:
        w, m = whole.per_class[name], merged.per_class[name]
        assert (m.images, m.pixel_count, m.maps.count) == (w.images, w.pixel_count, w.maps.count) == (4, 4, 4)
        np.testing.assert_allclose(m.maps.mean, w.maps.mean, rtol=0, atol=1e-15)
        np.testing.assert_allclose(m.masses.std(), w.masses.std(), rtol=0, atol=1e-15)
        np.testing.assert_allclose(m.pixel_sum, w.pixel_sum, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="same audit"):
        merged.merge(AuditStats(["a", "z"], n_regions=2, grid=4))  # a class this audit does not have


def test_the_earlier_image_wins_a_tie_even_at_the_cut_and_through_float_noise() -> None:
    top = TopN(2)
    for order, mass in enumerate([1.0, 0.5, 1.0000000000000002, 1.0, 0.9999999999999998]):
        top.add(Ranked(mass, order, f"k{order}", {}))
    # Five images at mass 1 up to float noise: the first two to arrive are kept, in arrival order.
    assert [r.key for r in top.best()] == ["k0", "k2"]
    top = TopN(1)
    top.add(Ranked(0.8, 0, "first", {}))
    top.add(Ranked(0.8 + 1e-12, 1, "later", {}))
    top.add(Ranked(0.81, 2, "larger", {}))
    assert [r.key for r in top.best()] == ["larger"]
