"""list_images expands folders; sample_images gives the four bundled photos."""

from __future__ import annotations

from pathlib import Path

from fakes import deny_listing
from PIL import Image

from saliscope.io import list_images, sample_images


def test_list_images_expands_directories(tmp_path: Path) -> None:
    for name in ["b.JPG", "a.png", "c.webp", "d.TIFF", "notes.txt", ".hidden.jpg", "e.jpeg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.png").write_bytes(b"x")
    single = tmp_path / "notes.txt"
    missing = tmp_path / "missing.jpg"
    found = list_images([tmp_path, single, missing])
    names = [p.name for p in found]
    assert names == ["a.png", "b.JPG", "c.webp", "d.TIFF", "e.jpeg", "notes.txt", "missing.jpg"]
    assert list_images(str(tmp_path / "a.png")) == [tmp_path / "a.png"]
    assert list_images(tmp_path / "sub") == [tmp_path / "sub" / "deep.png"]


def test_sample_images() -> None:
    samples = sample_images()
    assert list(samples) == ["chelsea", "coffee", "astronaut", "rocket"]
    assert all(isinstance(im, Image.Image) and im.mode == "RGB" for im in samples.values())
    assert samples["chelsea"].size == (451, 300)
    assert samples["coffee"].size == (600, 400)


def test_list_images_unlistable_folder_is_an_image_error(tmp_path: Path, monkeypatch) -> None:
    import pytest

    from saliscope.core.errors import ImageError

    deny_listing(monkeypatch, tmp_path)
    with pytest.raises(ImageError, match="no permission to list the folder") as info:
        list_images([tmp_path])
    assert "permissions" in info.value.fix
