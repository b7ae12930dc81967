"""Expensive objects the model tests share, built once per test session.

Plain functions (cached), so any test module can use them; ``conftest.py`` wraps the model in a fixture.
"""

from __future__ import annotations

from functools import cache

import torch
from PIL import Image
from torch import nn

from saliscope.io import sample_images
from saliscope.models import load_model


@cache
def default_model() -> nn.Module:
    """The embedded default model (callers must not modify it)."""
    return load_model()


@cache
def samples() -> dict[str, Image.Image]:
    """The four bundled photos, by name."""
    return sample_images()


@cache
def sample_probs() -> dict[str, torch.Tensor]:
    """{photo name: (1000,) softmax probabilities of the default model}."""
    model = default_model()
    x = model.preprocess(list(samples().values()))
    with torch.no_grad():
        probs = model(x).softmax(-1)
    return dict(zip(samples(), probs, strict=True))
