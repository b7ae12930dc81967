"""What the explorer accepts from a browser: upload bytes decoded in memory, bad ones refused with one message."""

from __future__ import annotations

import numpy as np
import pytest
from photos import EPS, NOT_AN_IMAGE, bomb_png, encoded, noise
from PIL import Image

from saliscope.app import read_upload, sample_photo
from saliscope.core.errors import ImageError


def test_a_photo_upload_is_decoded_to_the_same_rgb_pixels() -> None:
    photo = noise(30, 20)
    for fmt in ("PNG", "BMP", "TIFF", "WEBP"):
        got = read_upload(encoded(photo, fmt))
        assert got.mode == "RGB" and got.size == (30, 20)
        if fmt != "WEBP":  # lossy by default
            assert np.array_equal(np.asarray(got), np.asarray(photo)), fmt


def test_unusual_modes_are_converted_not_refused() -> None:
    grey = Image.fromarray(np.full((12, 12), 100, np.uint8))
    assert np.asarray(read_upload(encoded(grey)))[0, 0].tolist() == [100, 100, 100]
    clear = Image.new("RGBA", (12, 12), (0, 0, 0, 0))  # fully transparent: white, as load_image composites it
    assert np.asarray(read_upload(encoded(clear)))[0, 0].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    ("data", "problem", "fix"),
    [
        (NOT_AN_IMAGE, "the upload is not an image this page can read", "upload a JPEG, PNG"),
        (EPS, "the upload is not an image this page can read", "upload a JPEG, PNG"),  # no Ghostscript run
        (b"", "the upload is empty (0 bytes)", "upload a JPEG"),
        (encoded(noise(1, 1)), "the photo is 1×1 pixels; the model needs at least 8×8", "upload a larger photo"),
        (encoded(noise(7, 300)), "the photo is 7×300 pixels", "upload a larger photo"),
        (encoded(noise(40, 40))[:200], "the upload is truncated or damaged", "re-export the photo"),
    ],
    ids=["text", "eps", "empty", "1x1", "7x300", "truncated"],
)
def test_a_bad_upload_is_one_error_naming_the_problem_and_the_fix(data: bytes, problem: str, fix: str) -> None:
    with pytest.raises(ImageError) as caught:
        read_upload(data)
    assert caught.value.problem.startswith(problem) and caught.value.fix.startswith(fix)
    assert "\n" not in str(caught.value) and "/" not in caught.value.problem  # no server path in the message


@pytest.mark.parametrize("side", [20_000, 9_500], ids=["over twice the limit", "just over the limit"])
def test_a_decompression_bomb_is_refused_before_any_pixel_is_decoded(side: int) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    assert side * side > limit  # 9 500² = 90.25 M: between 1× and 2× the limit Pillow only warns
    with pytest.raises(ImageError) as caught:
        read_upload(bomb_png(side, side))
    pixels = f"{side * side:,} pixels"
    assert caught.value.problem == (
        f"the upload has {pixels}, more than the safety limit of {limit:,} (a possible decompression bomb)"
    )
    assert limit == Image.MAX_IMAGE_PIXELS  # read, never changed


def test_an_upload_larger_than_allowed_is_refused_by_size() -> None:
    with pytest.raises(ImageError, match="the upload is 1 MiB, more than the 0 MiB"):
        read_upload(b"x" * 2**20, max_bytes=1000)


def test_samples_come_only_from_the_fixed_list() -> None:
    cat = sample_photo("chelsea")
    assert cat.size == (451, 300) and cat.mode == "RGB"
    cat.putpixel((0, 0), (0, 0, 0))
    assert sample_photo("chelsea").getpixel((0, 0)) != (0, 0, 0)  # each caller gets a copy
    for name in ("../../etc/passwd", "/etc/hostname", "data", "chelsea.png"):
        with pytest.raises(ImageError, match="there is no sample photo"):
            sample_photo(name)
