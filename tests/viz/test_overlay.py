"""Overlays: values land on the right pixels of the ORIGINAL photo, in the right colours."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from saliscope.core.errors import InputError
from saliscope.core.views import FlatMapWarning
from saliscope.models.preprocess import Preprocess
from saliscope.viz import colorize, overlay

GREY = (128, 128, 128)


def photo(width: int = 640, height: int = 480) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def grey(width: int = 640, height: int = 480) -> Image.Image:
    return Image.new("RGB", (width, height), GREY)


def changed(a: Image.Image, b: Image.Image) -> np.ndarray:
    return np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).sum(2)


def test_zero_map_leaves_the_photo_unchanged():
    image = photo()
    with pytest.warns(FlatMapWarning):
        out = overlay(image, torch.zeros(224, 224), crop_box=Preprocess().crop_box(*image.size))
    assert out.size == image.size and out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(image))


def test_map_covers_whole_photo_without_crop_box_and_keeps_size():
    image = photo(300, 200)
    out = overlay(image, torch.ones(224, 224))
    diff = changed(out, image)
    assert out.size == (300, 200)
    assert (diff > 0).mean() > 0.99  # every pixel tinted (a constant map is full evidence everywhere)


@pytest.mark.parametrize("shape", [(224, 224), (1, 224, 224), (1, 1, 224, 224)])
def test_hot_pixel_lands_in_original_coordinates(shape):
    width, height = 640, 480
    pre = Preprocess(size=224, resize=256)
    left, top, right, bottom = pre.crop_box(width, height)
    m = np.zeros((224, 224), np.float32)
    row, col = 100, 50
    m[row, col] = 3.0
    out = overlay(grey(width, height), m.reshape(shape), crop_box=(left, top, right, bottom))
    diff = changed(out, grey(width, height))
    y, x = np.unravel_index(diff.argmax(), diff.shape)
    # Centre of model pixel (row, col) in photo coordinates.
    expect_x = left + (col + 0.5) * (right - left) / 224
    expect_y = top + (row + 0.5) * (bottom - top) / 224
    assert abs((x + 0.5) - expect_x) <= 1.0 and abs((y + 0.5) - expect_y) <= 1.0
    # Only the neighbourhood of that pixel is coloured (bilinear spreads one model pixel ~2 photo pixels).
    ys, xs = np.nonzero(diff)
    assert xs.min() >= expect_x - 4 and xs.max() <= expect_x + 4
    assert ys.min() >= expect_y - 4 and ys.max() <= expect_y + 4


def test_nothing_is_coloured_outside_the_crop_box():
    width, height = 451, 300  # chelsea's size: the crop is a centred 263x262 square
    box = Preprocess().crop_box(width, height)
    out = overlay(grey(width, height), torch.ones(224, 224), crop_box=box)
    diff = changed(out, grey(width, height))
    cols = np.nonzero(diff.any(0))[0]
    rows = np.nonzero(diff.any(1))[0]
    # Coloured pixels are exactly those whose centres lie inside the box.
    assert cols.min() == int(np.ceil(box[0] - 0.5)) and cols.max() == int(np.ceil(box[2] - 0.5)) - 1
    assert rows.min() == int(np.ceil(box[1] - 0.5)) and rows.max() == int(np.ceil(box[3] - 0.5)) - 1
    assert diff[:, : cols.min()].sum() == 0 and diff[:, cols.max() + 1 :].sum() == 0


def test_signed_map_negative_is_blue_and_positive_is_red():
    m = torch.zeros(224, 224)
    m[:, :112] = -1.0
    m[:, 112:] = 1.0
    out = np.asarray(overlay(grey(224, 224), m, signed=True), dtype=int)
    neg = out[50, 30]
    pos = out[50, 190]
    r, g, b = 0, 1, 2  # PIL arrays are RGB
    assert neg[b] > neg[r] + 20 and neg[b] > neg[g]
    assert pos[r] > pos[b] + 20 and pos[r] > pos[g]


def test_opacity_scales_with_magnitude():
    m = torch.zeros(224, 224)
    m[:, :100] = 1.0
    m[:, 100:200] = 0.25
    out = overlay(grey(224, 224), m, percentile=100.0, signed=False)
    diff = changed(out, grey(224, 224))
    strong, weak, none = diff[10, 20], diff[10, 150], diff[10, 215]
    assert strong > weak > none == 0


def test_a_fixed_scale_compares_maps_by_colour():
    m = torch.zeros(224, 224)
    m[:, :100] = 1.0
    # Own scale: a map and half of it look the same. A fixed scale keeps the half fainter.
    assert np.array_equal(
        np.asarray(overlay(grey(224, 224), m, signed=False)), np.asarray(overlay(grey(224, 224), m / 2, signed=False))
    )
    full = changed(overlay(grey(224, 224), m, signed=False, vmax=1.0), grey(224, 224))[10, 20]
    half = changed(overlay(grey(224, 224), m / 2, signed=False, vmax=1.0), grey(224, 224))[10, 20]
    clipped = changed(overlay(grey(224, 224), m * 3, signed=False, vmax=1.0), grey(224, 224))[10, 20]
    assert full > half > 0 and clipped == full
    with pytest.raises(InputError, match="vmax"):
        overlay(grey(224, 224), m, vmax=0.0)


def test_negative_values_of_an_unsigned_map_are_clipped():
    m = -torch.ones(224, 224)
    m[0, 0] = 1.0
    out = overlay(grey(224, 224), m, signed=False, percentile=100.0)
    diff = changed(out, grey(224, 224))
    assert diff[100:, 100:].sum() == 0


def test_colorize_alpha_is_scaled_absolute_value_and_uses_the_colormap_ends():
    values = np.array([[-1.0, 0.0, 0.5, 1.0]], np.float32)
    rgba = colorize(values, signed=True, alpha=0.8)
    np.testing.assert_allclose(rgba[0, :, 3], [0.8, 0.0, 0.8 * 0.5**0.5, 0.8], atol=1e-6)
    assert rgba[0, 0, 2] > rgba[0, 0, 0]  # -1: blue end of RdBu_r
    assert rgba[0, 3, 0] > rgba[0, 3, 2]  # +1: red end


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError, match="saliency map"):
        overlay(grey(), torch.zeros(3, 224, 224))
    with pytest.raises(InputError, match="NaN"):
        overlay(grey(), torch.full((8, 8), float("nan")))
    with pytest.raises(InputError, match="colormap"):
        overlay(grey(), torch.ones(8, 8), cmap="no-such-map")
    with pytest.raises(InputError, match="crop_box"):
        overlay(grey(), torch.ones(8, 8), crop_box=(10, 10, 5, 5))
