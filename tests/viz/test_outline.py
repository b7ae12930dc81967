"""The explained box or region drawn over a picture: where it is drawn, at any display size, and the panel."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from saliscope.core.errors import InputError
from saliscope.viz import Outline, panel
from saliscope.viz.outline import HALO, LINE


def _where(image: Image.Image, colour) -> np.ndarray:
    return (np.asarray(image.convert("RGB")) == np.array(colour, dtype=np.uint8)).all(-1)


def test_a_box_is_drawn_on_its_edges_only_and_the_picture_is_not_changed():
    grey = Image.new("RGB", (100, 60), (128, 128, 128))
    drawn = Outline((100, 60), box=(20.0, 10.0, 70.0, 50.0)).draw(grey)
    line = _where(drawn, LINE)
    assert line[10:51, 20].all() and line[10, 20:71].all()  # left and top edges
    assert not line[15:45, 25:65].any() and not line[:, 75:].any()  # inside and outside stay as they were
    assert _where(drawn, HALO).any()  # a dark halo keeps it visible on any map
    assert np.asarray(grey).max() == 128  # the caller's picture is left alone


def test_a_region_is_outlined_and_follows_a_shrunk_copy():
    mask = np.zeros((60, 100), dtype=bool)
    mask[20:40, 30:80] = True
    outline = Outline((100, 60), mask=mask)
    line = _where(outline.draw(Image.new("RGB", (100, 60))), LINE)
    assert line[20, 30:80].all() and line[39, 30:80].all() and not line[25:35, 40:70].any() and not line[:18].any()
    half = _where(outline.draw(Image.new("RGB", (50, 30))), LINE)  # the panel shows a downscaled photo
    assert half[10, 15:40].all() and not half[:8].any()
    with pytest.raises(InputError, match="mask is 10×10 pixels, the picture 100×60"):
        Outline((100, 60), mask=np.ones((10, 10), dtype=bool))


def test_the_panel_draws_the_outline_on_the_photo_and_every_map():
    photo = Image.new("RGB", (120, 80), (90, 90, 90))
    ramp = np.linspace(-1, 1, 9600).reshape(80, 120)
    maps = [("a", np.random.default_rng(0).random((80, 120)), False), ("b", ramp, True)]
    with_box = panel(photo, maps, outline=Outline((120, 80), box=(10.0, 10.0, 60.0, 50.0)), dpi=50)
    without = panel(photo, maps, dpi=50)
    for figure in (with_box, without):
        figure.canvas.draw()
    drawn = _where(Image.fromarray(np.asarray(with_box.canvas.buffer_rgba())[..., :3]), LINE).sum()
    plain = _where(Image.fromarray(np.asarray(without.canvas.buffer_rgba())[..., :3]), LINE).sum()
    assert plain == 0 and drawn > 3 * 2 * 30  # three cells, each with a box of sides of ~30 display pixels
