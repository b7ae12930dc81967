"""load_image: every unusable input gives one ImageError; every unusual one is converted to RGB."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageFile

from saliscope.core.errors import ImageError
from saliscope.io import load_image


@pytest.fixture(scope="module")
def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def rgb(image: Image.Image, x: int = 0, y: int = 0) -> tuple[int, ...]:
    assert image.mode == "RGB"
    return tuple(int(v) for v in image.getpixel((x, y)))


# ----- unusable inputs --------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not found") as info:
        load_image(tmp_path / "nope.jpg")
    assert info.value.fix


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a directory") as info:
        load_image(tmp_path)
    assert "list_images" in info.value.fix


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.png")


def test_truncated_jpeg(tmp_path: Path, jpeg_bytes: bytes) -> None:
    path = tmp_path / "half.jpg"
    path.write_bytes(jpeg_bytes[: len(jpeg_bytes) // 2])
    with pytest.raises(ImageError, match="truncated or damaged") as info:
        load_image(path)
    assert "re-download" in info.value.fix
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # we never flip Pillow's global switch


def test_truncated_png(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(skimage.data.coffee()).save(buffer, format="PNG")
    data = buffer.getvalue()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated or damaged"):
        load_image(tmp_path / "half.png")


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is a shopping list, not a photo\n")
    with pytest.raises(ImageError, match="not an image file"):
        load_image(path)


@pytest.mark.parametrize("limit_factor", [0.75, 0.25])  # warning zone (1-2x the limit) and error zone (>2x)
def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit_factor: float) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(100 * 100 * limit_factor))
    with pytest.raises(ImageError, match="safety limit") as info:
        load_image(path)
    assert "MAX_IMAGE_PIXELS" in info.value.fix
    assert int(100 * 100 * limit_factor) == Image.MAX_IMAGE_PIXELS  # not changed by us


def test_bomb_warning_filter_stays_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    before = list(warnings.filters)
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 7500)
    with pytest.raises(ImageError):
        load_image(path)
    assert warnings.filters == before


@pytest.mark.parametrize("size", [(1, 1), (7, 100), (100, 7)])
def test_too_small(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", size).save(path)
    with pytest.raises(ImageError, match=f"tiny.png is {size[0]}×{size[1]} pixels; need at least 8×8"):
        load_image(path)  # the file is named, like every other error about a file
    with pytest.raises(ImageError, match=f"^image is {size[0]}×{size[1]} pixels; need at least 8×8"):
        load_image(np.zeros((size[1], size[0], 3), np.uint8))


@pytest.mark.parametrize(
    "source,message",
    [
        (np.zeros((3, 32, 32), np.uint8), "channels-first"),
        (np.zeros((32, 32, 5), np.uint8), "must be"),
        (np.zeros((2, 32, 32, 3), np.uint8), "must be"),
        (np.full((32, 32), 2.0), r"must be in \[0, 1\]"),
        (np.full((32, 32), np.nan), "NaN"),
        (np.full((32, 32), -300, np.int32), "ambiguous"),
        (np.zeros((32, 32), np.complex64), "not an image type"),
        (12, "cannot read an image from a int"),
    ],
)
def test_bad_arrays_and_types(source: object, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        load_image(source)  # type: ignore[arg-type]


# ----- conversions ------------------------------------------------------------------------------------


def test_rgb_file_round_trip(tmp_path: Path) -> None:
    arr = skimage.data.astronaut()
    Image.fromarray(arr).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), arr)
    assert load_image(str(tmp_path / "a.png")).size == (512, 512)


@pytest.mark.parametrize(
    "mode,value,expected",
    [
        ("L", 200, (200, 200, 200)),
        ("1", 1, (255, 255, 255)),
        ("CMYK", (255, 0, 0, 0), (0, 255, 255)),  # pure cyan
        ("LA", (100, 0), (255, 255, 255)),  # fully transparent grey → white
        ("LA", (100, 255), (100, 100, 100)),
        ("RGBA", (10, 20, 30, 0), (255, 255, 255)),  # fully transparent → white
        ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
        ("RGBA", (0, 0, 0, 128), (127, 127, 127)),  # half-transparent black over white
    ],
)
def test_modes_become_rgb(tmp_path: Path, mode: str, value: object, expected: tuple[int, int, int]) -> None:
    image = Image.new(mode, (16, 16), value)  # type: ignore[arg-type]
    converted = load_image(image)
    assert converted.size == (16, 16)
    assert rgb(converted, 5, 5) == pytest.approx(expected, abs=1)
    suffix = ".tif" if mode == "CMYK" else ".png"
    image.save(tmp_path / f"img{suffix}")
    assert rgb(load_image(tmp_path / f"img{suffix}"), 5, 5) == pytest.approx(expected, abs=1)


@pytest.mark.parametrize(
    "mode,value,expected",
    [
        ("La", (50, 128), (177, 177, 177)),  # premultiplied: 50 is 99 at half alpha, over white
        ("RGBa", (10, 20, 30, 0), (255, 255, 255)),
        ("RGBX", (10, 20, 30, 0), (10, 20, 30)),
        ("YCbCr", (128, 128, 128), (128, 128, 128)),
    ],
)
def test_in_memory_only_modes(mode: str, value: tuple[int, ...], expected: tuple[int, int, int]) -> None:
    assert rgb(load_image(Image.new(mode, (16, 16), value))) == pytest.approx(expected, abs=1)


def test_palette_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (16, 16), 1)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue
    image.putpixel((0, 0), 0)
    image.info["transparency"] = 1  # blue is the transparent index
    image.save(tmp_path / "p.png")
    for source in (image, tmp_path / "p.png"):
        converted = load_image(source)
        assert rgb(converted, 0, 0) == (255, 0, 0)
        assert rgb(converted, 5, 5) == (255, 255, 255)
    opaque = Image.new("P", (16, 16), 1)
    opaque.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    assert rgb(load_image(opaque), 5, 5) == (0, 0, 255)


def test_16_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (16, 1))  # (16, 32)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    image = load_image(path)
    arr = np.asarray(image)[..., 0]
    assert arr[0, 0] == 0 and arr[0, -1] == 255
    assert np.all(np.diff(arr[0].astype(int)) >= 0) and len(np.unique(arr)) > 20
    assert np.array_equal(np.asarray(load_image(ramp)), np.asarray(image))
    full = Image.fromarray(np.full((16, 16), 65535, np.uint16))
    assert rgb(load_image(full)) == (255, 255, 255)
    mid = Image.fromarray(np.full((16, 16), 32896, np.uint16))  # 128 * 257
    assert rgb(load_image(mid)) == (128, 128, 128)


def test_32_bit_integer_mode() -> None:
    image = Image.fromarray(np.full((16, 16), 65535, np.int32))
    assert image.mode == "I"
    assert rgb(load_image(image)) == (255, 255, 255)
    wide = Image.fromarray(np.arange(256, dtype=np.int32).reshape(16, 16) * 100_000)
    arr = np.asarray(load_image(wide))[..., 0]
    assert arr.min() == 0 and arr.max() == 255  # beyond 16 bits: the actual range is stretched


def test_float_mode_f() -> None:
    unit = Image.fromarray(np.full((16, 16), 0.5, np.float32))
    assert unit.mode == "F"
    assert rgb(load_image(unit)) == (128, 128, 128)
    eight_bit = Image.fromarray(np.full((16, 16), 200.0, np.float32))
    assert rgb(load_image(eight_bit)) == (200, 200, 200)


@pytest.mark.parametrize(
    "arr,expected",
    [
        (np.full((16, 16), 0.5), (128, 128, 128)),
        (np.full((16, 16, 3), (1.0, 0.0, 0.25), np.float32), (255, 0, 64)),
        (np.full((16, 16, 1), 1.0 + 1e-6), (255, 255, 255)),
        (np.ones((16, 16), bool), (255, 255, 255)),
        (np.full((16, 16), 40000, np.uint16), (156, 156, 156)),
        (np.full((16, 16), 77, np.int64), (77, 77, 77)),  # e.g. np.array(img).astype(int)
        (np.full((16, 16, 4), (255, 0, 0, 0), np.uint8), (255, 255, 255)),
        (np.full((16, 16, 4), (255, 0, 0, 255), np.uint8), (255, 0, 0)),
        (np.full((16, 16, 3), 9, np.uint8), (9, 9, 9)),
    ],
)
def test_arrays(arr: np.ndarray, expected: tuple[int, int, int]) -> None:
    image = load_image(arr)
    assert image.size == (16, 16)
    assert rgb(image, 3, 3) == expected


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)  # stored landscape, 40 wide
    arr[:, :20] = 255  # left half white
    image = Image.fromarray(arr)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "rotated.jpg")
    assert upright.size == (20, 40)  # displayed portrait
    top, bottom = np.asarray(upright)[2, 10], np.asarray(upright)[-3, 10]
    assert top.mean() > 200 and bottom.mean() < 50  # the white half ends up on top


def test_pil_input_is_not_modified() -> None:
    image = Image.new("RGBA", (16, 16), (1, 2, 3, 0))
    out = load_image(image)
    assert image.mode == "RGBA" and out is not image


def test_symlink_loop_and_broken_link(tmp_path: Path) -> None:
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    with pytest.raises(ImageError, match="is a symbolic link that loops back on itself") as info:
        load_image(tmp_path / "a.png")
    assert "pass the image file itself" in info.value.fix
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(ImageError, match=r"is a broken symbolic link \(its target .*gone\.png does not exist\)"):
        load_image(tmp_path / "dangling.png")


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.png"
    Image.new("RGB", (16, 16)).save(path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root ignores the mode: simulate what everyone else gets
            real_open = Image.open

            def refuse(fp, *args, **kwargs):
                if Path(fp) == path:
                    raise PermissionError(13, "Permission denied", str(fp))
                return real_open(fp, *args, **kwargs)

            monkeypatch.setattr(Image, "open", refuse)
        with pytest.raises(ImageError, match="no permission to read"):
            load_image(path)
    finally:
        path.chmod(0o644)


def test_png_with_a_jpg_name_is_read_by_its_content(tmp_path: Path) -> None:
    arr = skimage.data.chelsea()
    Image.fromarray(arr).save(tmp_path / "really_a_png.jpg", format="PNG")
    assert np.array_equal(np.asarray(load_image(tmp_path / "really_a_png.jpg")), arr)


def test_file_in_a_folder_that_cannot_be_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from saliscope.io import list_images

    path = tmp_path / "locked" / "photo.png"
    real_stat = Path.stat

    def stat(self, **kwargs):  # what stat() gives everyone but root under a folder of mode 0o600
        if self.parent == path.parent:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    assert list_images([path]) == [path]  # kept, so that load_image can say what is wrong
    with pytest.raises(ImageError, match=r"no permission to reach .*photo\.png") as info:
        load_image(path)
    assert "permissions of the folders" in info.value.fix
