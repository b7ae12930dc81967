"""Thresholds and grading bands refuse values that cannot mean anything, with one clear message."""

from __future__ import annotations

import pytest

from saliscope.core.errors import InputError
from saliscope.trust.thresholds import Band, Thresholds


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"deletion_steps": 0}, "deletion_steps must be a whole number >= 1"),
        ({"deletion_random_maps": 2.5}, "deletion_random_maps must be a whole number"),
        ({"sanity_stages": True}, "sanity_stages must be a whole number"),
        ({"min_shift_rank_correlation": 1.5}, r"min_shift_rank_correlation must be a number in \[-1, 1\]"),
        ({"max_completeness_gap": -0.1}, "max_completeness_gap must be a number >= 0"),
        ({"flat_tolerance": "small"}, "flat_tolerance must be a number"),
    ],
)
def test_thresholds_that_cannot_mean_anything_are_refused(kwargs, match) -> None:
    with pytest.raises(InputError, match=match):
        Thresholds(**kwargs)


def test_a_band_must_put_good_on_the_better_side() -> None:
    assert Band(1.0, 10.0).grade(0.5) == "good"
    with pytest.raises(InputError, match="lower is better"):
        Band(10.0, 1.0)
    with pytest.raises(InputError, match="higher is better"):
        Band(0.5, 0.8, higher_is_better=True)
