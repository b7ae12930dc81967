"""CLI fixtures: the CLI reuses the session's default model, and a photo of a cat on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image


@pytest.fixture(autouse=True)
def reuse_default_model(monkeypatch, default_model):
    """The CLI's model loader, except that the default model comes from the session fixture (~1 s saved
    per run). Any other spec goes through the real loader, so its errors are the real ones."""
    import saliscope.models

    real = saliscope.models.load_model

    def load(spec=None, *args, arch=None, device="cpu", **kwargs):
        if spec in (None, "default") and arch is None and device == "cpu" and not args and not kwargs:
            return default_model
        return real(spec, *args, arch=arch, device=device, **kwargs)

    monkeypatch.setattr(saliscope.models, "load_model", load)


@pytest.fixture(scope="session")
def chelsea_array() -> np.ndarray:
    import skimage.data

    return skimage.data.chelsea()


@pytest.fixture
def chelsea_png(tmp_path, chelsea_array) -> Path:
    path = tmp_path / "chelsea.png"
    Image.fromarray(chelsea_array).save(path)
    return path


@pytest.fixture
def corrupt_jpg(tmp_path) -> Path:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
