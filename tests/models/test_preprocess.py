"""Preprocess: pixels → model input, and the geometry to map a model-sized map back onto the photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from saliscope.core.errors import InputError
from saliscope.models import IMAGENET_MEAN, IMAGENET_STD, Preprocess


def photo(width: int, height: int, value: tuple[int, int, int] = (128, 128, 128)) -> Image.Image:
    return Image.new("RGB", (width, height), value)


def test_output_shape_dtype_and_values() -> None:
    pre = Preprocess()
    x = pre(photo(451, 300, (255, 128, 0)))
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    expected = [(v / 255 - m) / s for v, m, s in zip((255, 128, 0), IMAGENET_MEAN, IMAGENET_STD, strict=True)]
    assert torch.allclose(x[0, :, 100, 100], torch.tensor(expected), atol=1e-5)
    assert torch.allclose(x.amin((0, 2, 3)), x.amax((0, 2, 3)))  # a flat photo stays flat


def test_accepts_arrays_paths_and_lists(tmp_path) -> None:
    pre = Preprocess(size=32, resize=40)
    arr = np.zeros((50, 60, 3), np.uint8)
    arr[..., 1] = 255
    path = tmp_path / "green.png"
    Image.fromarray(arr).save(path)
    from_array, from_path, from_str = pre(arr), pre(path), pre(str(path))
    assert torch.equal(from_array, from_path) and torch.equal(from_path, from_str)
    batch = pre([arr, path, Image.fromarray(arr)])
    assert batch.shape == (3, 3, 32, 32)
    assert torch.equal(batch[1:2], from_path)
    with pytest.raises(InputError):
        pre([])


def test_resize_follows_torchvision_rounding() -> None:
    pre = Preprocess(size=224, resize=256)
    assert pre.resized_size(451, 300) == (384, 256)  # int(256 * 451 / 300) = 384 (384.85 rounded down)
    assert pre.resized_size(300, 451) == (256, 384)
    assert pre.resized_size(256, 256) == (256, 256)


def test_normalize_denormalize_round_trip() -> None:
    pre = Preprocess(mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    pixels = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    model_space = pre.normalize(pixels)
    assert torch.allclose(model_space[:, 1], (pixels[:, 1] - 0.2) / 0.25)
    assert torch.allclose(pre.denormalize(model_space), pixels, atol=1e-6)
    assert torch.allclose(pre.denormalize(pre.normalize(pixels[0])), pixels[0], atol=1e-6)  # (3, H, W)
    assert pre.normalize(pixels.double()).dtype == torch.float64


def test_pixel_range_is_black_and_white() -> None:
    pre = Preprocess()
    low, high = pre.pixel_range()
    assert low.shape == high.shape == (3, 1, 1)
    assert torch.allclose(low.flatten(), -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD))
    assert torch.allclose(high.flatten(), (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD))
    black = pre(photo(64, 64, (0, 0, 0)))
    assert torch.allclose(black, low.expand_as(black[0]).unsqueeze(0), atol=1e-6)


def test_to_pil_inverts_preprocessing() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    pre = Preprocess(size=224, resize=224)  # no resampling: pixels survive exactly
    x = pre(arr)
    assert np.array_equal(np.asarray(pre.to_pil(x)), arr)
    assert np.array_equal(np.asarray(pre.to_pil(x[0])), arr)
    with pytest.raises(InputError, match="x\\[i\\]"):
        pre.to_pil(torch.zeros(2, 3, 8, 8))


@pytest.mark.parametrize("width,height", [(451, 300), (300, 451), (640, 427), (256, 256), (1000, 250)])
def test_crop_box_maps_marked_pixels_back(width: int, height: int) -> None:
    pre = Preprocess(size=224, resize=256, interpolation="nearest")
    left, top, right, bottom = pre.crop_box(width, height)
    assert right - left == pytest.approx(224 * min(width, height) / 256, rel=0.01)
    assert bottom - top == pytest.approx(224 * min(width, height) / 256, rel=0.01)
    for fx, fy in [(0.5, 0.5), (0.3, 0.7), (0.8, 0.2)]:
        # A 9x9 white square inside the crop, on black.
        cx, cy = int(left + fx * (right - left)), int(top + fy * (bottom - top))
        arr = np.zeros((height, width, 3), np.uint8)
        arr[cy - 4 : cy + 5, cx - 4 : cx + 5] = 255
        x = pre(arr)[0, 0]
        rows, cols = torch.nonzero(x > x.min(), as_tuple=True)
        # Centre of the marked model pixels, mapped back through the box.
        u, v = cols.float().mean() + 0.5, rows.float().mean() + 0.5
        back_x = left + float(u) * (right - left) / 224
        back_y = top + float(v) * (bottom - top) / 224
        assert back_x == pytest.approx(cx + 0.5, abs=1.5)
        assert back_y == pytest.approx(cy + 0.5, abs=1.5)


def test_crop_box_for_square_input_of_crop_size() -> None:
    assert Preprocess(size=224, resize=224).crop_box(224, 224) == (0.0, 0.0, 224.0, 224.0)
    assert Preprocess(size=224, resize=256).crop_box(512, 512) == (32.0, 32.0, 480.0, 480.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(size=0),
        dict(size=224, resize=200),
        dict(std=(1, 0, 1)),
        dict(mean=(0.5, 0.5)),
        dict(interpolation="lanczos"),
    ],
)
def test_invalid_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Preprocess(**kwargs)


def test_is_frozen_and_not_a_module() -> None:
    pre = Preprocess(mean=[0.5, 0.5, 0.5], std=np.array([0.5, 0.5, 0.5]))
    assert pre.mean == (0.5, 0.5, 0.5) and isinstance(pre.std, tuple)
    with pytest.raises(AttributeError):
        pre.size = 3  # type: ignore[misc]
    assert not isinstance(pre, torch.nn.Module)


def test_stretch_squeezes_the_photo_and_the_crop_box_follows():
    """Hugging Face's ViT processors resize both sides (no aspect ratio kept): the map then covers the whole
    photo (or, after a centre crop, the same share of each side)."""
    whole = Preprocess(size=32, resize=32, stretch=True)
    assert whole.resized_size(90, 60) == (32, 32) and whole.crop_box(90, 60) == (0.0, 0.0, 90.0, 60.0)
    cropped = Preprocess(size=28, resize=32, stretch=True)
    assert cropped.crop_box(80, 40) == pytest.approx((5.0, 2.5, 75.0, 37.5))
    # a left/right split photo stays split in the middle of the input, not cropped away
    photo = np.zeros((40, 80, 3), dtype=np.uint8)
    photo[:, 40:] = 255
    x = whole.denormalize(whole(photo))[0]
    assert float(x[:, :, :15].max()) < 0.05 and float(x[:, :, 17:].min()) > 0.95


def test_channel_values_are_checked_with_their_option_named():
    from saliscope.models.preprocess import parse_channels

    assert parse_channels(" 0.5, 0.25 ,1 ", "mean") == (0.5, 0.25, 1.0)
    for text, message in (
        ("0.5,0.5", r"--mean needs three numbers \(R,G,B\), got 2"),
        ("0.5,,0.5", "is not a list of numbers"),
        ("nan,1,1", "must be finite"),
    ):
        with pytest.raises(InputError, match=message):
            parse_channels(text, "mean")
    with pytest.raises(InputError, match="--std has a value of -1") as info:
        parse_channels("1,-1,1", "std")
    assert "--std 0.229,0.224,0.225" in str(info.value.cli_fix)
