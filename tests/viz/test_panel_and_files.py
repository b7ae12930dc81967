"""Panels render headless without pyplot; every write is atomic."""

from __future__ import annotations

import json
import os
import sys

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from saliscope.viz import atomic_write, display_hint, panel, save_json, save_npy, save_png


def test_panel_is_one_row_with_a_colourbar_per_kind_and_leaves_matplotlib_alone(tmp_path):
    backend = matplotlib.get_backend()
    image = Image.new("RGB", (451, 300), (120, 100, 90))
    g = torch.linspace(-1, 1, 224).repeat(224, 1)
    fig = panel(
        image,
        [("A", g.abs(), False), ("B", g.abs() ** 2, False), ("C", g, True)],
        crop_box=(94.0, 18.75, 357.0, 281.25),
        title="a title",
    )
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[1:] == ["A", "B", "C"]
    assert fig.get_suptitle() == "a title"
    images_shown = [ax for ax in fig.axes if ax.images]
    assert len(images_shown) == 4
    # two contiguous kinds (unsigned A, B then signed C) → two colourbars
    colourbars = [child for ax in fig.axes for child in ax.child_axes]
    assert len(colourbars) == 2
    assert [c.get_xlabel() for c in colourbars] == ["magnitude", "signed evidence"]
    path = save_png(fig, tmp_path / "panel.png")
    with Image.open(path) as written:
        assert written.width > written.height > 100
    assert matplotlib.get_backend() == backend
    assert "matplotlib.pyplot" not in sys.modules or not __import__("matplotlib.pyplot").pyplot.get_fignums()


def test_save_png_npy_json_round_trip(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (7, 10, 3), dtype=np.uint8)
    save_png(Image.fromarray(pixels), tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as back:
        np.testing.assert_array_equal(np.asarray(back), pixels)  # the faster zlib level is still lossless
    arr = torch.arange(6, dtype=torch.float32).view(1, 2, 3)
    save_npy(arr, tmp_path / "a.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), arr.numpy())
    save_json({"x": torch.tensor([1.5]), "y": np.float32(2.0), "z": float("nan"), "p": tmp_path}, tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1.5], "y": 2.0, "z": None, "p": str(tmp_path)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npy", "a.png"]


def test_written_files_have_ordinary_permissions(tmp_path):
    save_json({}, tmp_path / "s.json")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failing_writer_leaves_no_file_and_no_temp_file(tmp_path):
    target = tmp_path / "out" / "x.bin"
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half of it")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_a_failing_writer_keeps_the_previous_version(tmp_path):
    target = tmp_path / "x.json"
    save_json({"v": 1}, target)
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as f:
        f.write(b'{"v": 2')
        raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_unserialisable_json_writes_nothing(tmp_path):
    with pytest.raises(TypeError):
        save_json({"f": object()}, tmp_path / "bad.json")
    assert list(tmp_path.iterdir()) == []


def test_display_hints():
    assert display_hint("integrated-gradients").signed
    assert display_hint("gradient").reduce == "max-abs" and not display_hint("gradient").signed
    assert display_hint("vargrad").reduce == "sum"
    # a signed view of a max-abs method needs a sign-keeping reduction
    assert display_hint("gradient", "positive").reduce == "sum"
    assert display_hint("integrated-gradients", "absolute").reduce == "sum"
