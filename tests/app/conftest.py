"""Explorer fixtures: a tiny classifier with labels and its own preprocessing (fast), and the sample photos."""

from __future__ import annotations

import pytest

from saliscope.models.preprocess import Preprocess
from saliscope.train import TinyCNN

LABELS = ("apple", "bird", "cat", "dog", "eel", "fig")


@pytest.fixture(scope="session")
def tiny():
    """Six classes, a 32 px centre crop of a photo whose shorter side is scaled to 40 px."""
    preprocess = Preprocess(size=32, resize=40, mean=(0.5,) * 3, std=(0.25,) * 3)
    model = TinyCNN(len(LABELS), width=4, preprocess=preprocess, labels=LABELS, seed=0).eval()
    model.name = "tiny"
    return model
