"""The shortcut benchmark generator: files, the artefact's exact place and colour, control, swap, seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from saliscope.core.errors import InputError
from saliscope.datasets import Artefact, make_shortcut_dataset

SIZE = 32


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _pictures(folder: Path) -> list[np.ndarray]:
    return [_read(p) for p in sorted(folder.glob("*.png"))]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    """A red square data set and its control, same seed: the same pictures with and without the artefact."""
    root = tmp_path_factory.mktemp("shortcut")
    art = Artefact(kind="square", position="bottom-right", size=0.25, colour=(255, 0, 0))
    data = make_shortcut_dataset(root / "shortcut", artefact=art, n_train=3, n_test=2, image_size=SIZE, seed=5)
    control = make_shortcut_dataset(root / "control", shortcut_class=None, n_train=3, n_test=2, image_size=SIZE, seed=5)
    return data, control


def test_files_and_metadata(pair) -> None:
    data, _ = pair
    for split, n in (("train", 3), ("test", 2), ("test_swapped", 2)):
        for name in ("normal", "pneumonia"):
            files = sorted((data.root / split / name).glob("*.png"))
            assert [f.name for f in files] == [f"{name}_{i:04d}.png" for i in range(n)]
            assert all(Image.open(f).size == (SIZE, SIZE) and Image.open(f).mode == "RGB" for f in files)
    meta = json.loads((data.root / "dataset.json").read_text())
    assert meta["classes"] == ["normal", "pneumonia"] and meta["shortcut_class"] == "pneumonia"
    assert meta["box"] == list(data.artefact.box(SIZE)) and meta["seed"] == 5
    assert meta["artefact"] == {
        "kind": "square",
        "position": "bottom-right",
        "size": 0.25,
        "colour": [255, 0, 0],
        "text": "R",
    }
    assert (data.train, data.test, data.test_swapped) == (
        data.root / "train",
        data.root / "test",
        data.root / "test_swapped",
    )


def test_box_geometry() -> None:
    # side round(0.25 * 32) = 8; named corners sit 5% of the free 24 px in: round(1.2) = 1
    assert Artefact(size=0.25).box(32) == (1, 1, 9, 9)
    assert Artefact(size=0.25, position="bottom-right").box(32) == (23, 23, 31, 31)
    assert Artefact(size=0.25, position=(0.0, 1.0)).box(32) == (0, 24, 8, 32)
    assert Artefact(size=0.25, position="centre").box(32) == (12, 12, 20, 20)
    assert Artefact(kind="stripe", position="bottom", size=0.125).box(32) == (0, 28, 32, 32)
    assert Artefact(kind="stripe", position="top-right", size=0.125).box(32) == (0, 0, 32, 4)  # a corner: its top edge
    assert Artefact(kind="stripe", position="left", size=0.125).box(32) == (0, 0, 4, 32)
    mask = Artefact(size=0.25, position="bottom-right").mask(32)
    assert mask.dtype == bool and mask.sum() == 64 and mask[23:31, 23:31].all()


def test_the_artefact_is_exactly_at_its_box_in_its_colour(pair) -> None:
    data, control = pair
    x0, y0, x1, y1 = data.artefact.box(SIZE)
    inside = data.artefact.mask(SIZE)
    for split in ("train", "test"):
        marked = _pictures(data.root / split / "pneumonia")
        plain = _pictures(control.root / split / "pneumonia")
        for with_it, without in zip(marked, plain, strict=True):
            assert (with_it[y0:y1, x0:x1] == (255, 0, 0)).all()
            np.testing.assert_array_equal(with_it[~inside], without[~inside])  # nothing else changed
        # the other class is untouched: byte for byte the control's pictures
        for a, b in zip(
            _pictures(data.root / split / "normal"), _pictures(control.root / split / "normal"), strict=True
        ):
            np.testing.assert_array_equal(a, b)


def test_control_has_no_artefact(pair) -> None:
    _, control = pair
    assert control.artefact is None and control.shortcut_class is None and control.artefact_mask() is None
    meta = json.loads((control.root / "dataset.json").read_text())
    assert meta["artefact"] is None and meta["box"] is None
    for split in ("train", "test", "test_swapped"):
        for name in ("normal", "pneumonia"):
            for img in _pictures(control.root / split / name):
                assert img[..., 0].max() == img[..., 1].max() == img[..., 2].max()  # grey film, no red anywhere
                assert (img[..., 0] == img[..., 1]).all()
    # the control's swapped test is its test
    for a, b in zip(_pictures(control.test / "normal"), _pictures(control.test_swapped / "normal"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_swapped_test_moves_the_artefact_to_the_other_class(pair) -> None:
    data, _ = pair
    inside = data.artefact.mask(SIZE)
    for name, expect in (("normal", True), ("pneumonia", False)):
        for swapped, test in zip(_pictures(data.test_swapped / name), _pictures(data.test / name), strict=True):
            assert (swapped[inside] == (255, 0, 0)).all() == expect
            assert (test[inside] == (255, 0, 0)).all() != expect
            np.testing.assert_array_equal(swapped[~inside], test[~inside])  # the same pictures


def test_three_classes_swap_onto_every_other_class(tmp_path: Path) -> None:
    art = Artefact(kind="stripe", position="left", size=0.125, colour=(0, 255, 0))
    data = make_shortcut_dataset(
        tmp_path, classes=("a", "b", "c"), shortcut_class="b", artefact=art, n_train=1, n_test=1, image_size=SIZE
    )
    band = data.artefact_mask()
    has = {
        (s, c): bool((_read(data.root / s / c / f"{c}_0000.png")[band] == (0, 255, 0)).all())
        for s in ("train", "test", "test_swapped")
        for c in "abc"
    }
    assert has == {
        ("train", "a"): False,
        ("train", "b"): True,
        ("train", "c"): False,
        ("test", "a"): False,
        ("test", "b"): True,
        ("test", "c"): False,
        ("test_swapped", "a"): True,
        ("test_swapped", "b"): False,
        ("test_swapped", "c"): True,
    }


def test_tag_strokes_lie_inside_the_box(tmp_path: Path) -> None:
    art = Artefact(kind="tag", position="top-right", size=0.3, colour=(255, 255, 0), text="L")
    data = make_shortcut_dataset(tmp_path / "s", artefact=art, n_train=1, n_test=1, image_size=SIZE)
    control = make_shortcut_dataset(tmp_path / "c", shortcut_class=None, n_train=1, n_test=1, image_size=SIZE)
    img = _read(data.train / "pneumonia" / "pneumonia_0000.png")
    ref = _read(control.train / "pneumonia" / "pneumonia_0000.png")
    changed = (img != ref).any(axis=2)
    inside = art.mask(SIZE)
    assert changed.any() and not changed[~inside].any()
    assert (img[changed] == (255, 255, 0)).all()
    x0, y0, x1, y1 = art.box(SIZE)
    assert x1 == SIZE - round(0.05 * (SIZE - (x1 - x0))) and y0 == round(0.05 * (SIZE - (y1 - y0)))
    # an "L": ink down the left column of the box and along its bottom row, none at the top right
    strokes = changed[y0:y1, x0:x1]
    assert strokes[:, 0].all() and strokes[-1, :].all() and not strokes[0, -1]


def test_same_seed_same_bytes_other_seed_other_pictures(tmp_path: Path) -> None:
    kwargs = dict(n_train=2, n_test=1, image_size=SIZE)
    a = make_shortcut_dataset(tmp_path / "a", seed=3, **kwargs)
    b = make_shortcut_dataset(tmp_path / "b", seed=3, **kwargs)
    c = make_shortcut_dataset(tmp_path / "c", seed=4, **kwargs)
    files = sorted(p.relative_to(a.root) for p in a.root.rglob("*") if p.is_file())
    assert len(files) == 1 + 2 * (2 + 1 + 1)
    assert all((a.root / f).read_bytes() == (b.root / f).read_bytes() for f in files)
    assert (a.train / "normal" / "normal_0000.png").read_bytes() != (
        c.train / "normal" / "normal_0000.png"
    ).read_bytes()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kind="circle"),
        dict(position="middle"),
        dict(kind="stripe", position="centre"),
        dict(size=0.0),
        dict(size=1.5),
        dict(colour=(300, 0, 0)),
        dict(position=(0.5, 2.0)),
        dict(kind="tag", text=" "),
    ],
)
def test_bad_artefacts_name_the_fix(kwargs: dict) -> None:
    with pytest.raises(InputError) as info:
        Artefact(**kwargs)
    assert info.value.fix


def test_bad_data_set_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not one of the classes"):
        make_shortcut_dataset(tmp_path / "x", shortcut_class="cat")
    with pytest.raises(InputError, match="two distinct"):
        make_shortcut_dataset(tmp_path / "x", classes=("a", "a"))
    with pytest.raises(InputError, match="folder name"):
        make_shortcut_dataset(tmp_path / "x", classes=("a", "b/c"), shortcut_class="a")
    make_shortcut_dataset(tmp_path / "y", n_train=1, n_test=1, image_size=16)
    with pytest.raises(InputError, match="already holds"):
        make_shortcut_dataset(tmp_path / "y", n_train=1, n_test=1, image_size=16)
