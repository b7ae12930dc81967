"""Fixtures shared by every test: tiny hand-set models, a batch, and the real default model (loaded once)."""

from __future__ import annotations

import pytest
import torch
from shared_objects import default_model as _default_model
from tiny_models import C, H, Linear, SmallCNN, W

from saliscope import keep_freed_memory


@pytest.fixture(scope="session")
def default_model():
    """The embedded default model, loaded once per session (tests must not modify it)."""
    return _default_model()


@pytest.fixture
def linear() -> Linear:
    return Linear().eval()


@pytest.fixture
def cnn() -> SmallCNN:
    return SmallCNN().eval()


@pytest.fixture
def smooth_cnn() -> SmallCNN:
    return SmallCNN(smooth=True).eval()


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.randn(3, C, H, W, generator=torch.Generator().manual_seed(2))


# The suite runs as the command does: freed tensor memory is kept for reuse (core/allocator.py).
keep_freed_memory()
