"""Comparison figure: "photo | method A | method B | ..." in one row, one colourbar per kind of map.

Built on ``matplotlib.figure.Figure`` with an Agg canvas, never pyplot: nothing global (backend,
current figure, rcParams) changes, and no figure is kept alive by a figure manager.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, overload

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from ..core.errors import InputError
from .colormaps import DEFAULT_ALPHA, MapLike, as_map, get_cmap
from .outline import Outline
from .overlay import Box, overlay

if TYPE_CHECKING:
    from matplotlib.axes import Axes

MapEntry = tuple[str, MapLike, "bool | None"]


def panel(
    image: Image.Image,
    maps: Sequence[MapEntry],
    *,
    crop_box: Box | None = None,
    title: str | None = None,
    signed_cmap: str | Colormap | None = None,
    unsigned_cmap: str | Colormap | None = None,
    alpha: float = DEFAULT_ALPHA,
    percentile: float = 99.0,
    max_side: int = 512,
    column_width: float = 3.0,
    dpi: float = 100.0,
    per_row: int = 6,
    outline: Outline | None = None,
) -> Figure:
    """The photo (with the model's crop outlined), then each map as an overlay; rows of ``per_row`` cells.

    Args:
        image: the original photo.
        maps: ``(title, map, signed)`` per column; ``map`` is (H, W), (1, H, W) or (1, 1, H, W);
            ``signed`` None decides from the data.
        crop_box: the model input's box in the photo (``Preprocess.crop_box``); None = whole photo.
        title: figure title.
        max_side: the photo is shown downscaled to at most this many pixels per side.
        column_width: inches per column.
        per_row: cells per row (the photo counts as one); more maps wrap onto further rows.
        outline: a box or region (in the photo's pixels) drawn over the photo and every map: what was explained.

    Returns:
        A Figure with an Agg canvas; save it with :func:`saliscope.viz.save_png`.
    """
    if not isinstance(image, Image.Image):
        raise InputError(f"panel needs a PIL image, got {type(image).__name__}", "use saliscope.load_image()")
    photo, box = shrink(image.convert("RGB"), crop_box, max_side)
    entries = []
    for name, saliency, signed in maps:
        values = as_map(saliency)
        entries.append((name, values, bool((values < 0).any()) if signed is None else bool(signed)))

    # Wrap into rows of at most `per_row` cells (the photo is the first cell), each row with its colourbars.
    cells = 1 + len(entries)
    columns = min(cells, per_row)
    rows = -(-cells // columns)
    aspect = photo.height / photo.width
    image_height = column_width * min(aspect, 1.6)
    figure = Figure(figsize=(column_width * columns, rows * (image_height + 0.6) + 0.5), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2 * rows, columns, height_ratios=[image_height, 0.35] * rows)

    ax = figure.add_subplot(grid[0, 0])
    ax.imshow(np.asarray(photo if outline is None else outline.draw(photo)))
    dash_crop(ax, box, photo.size)
    ax.set_title("input" if box is None else "input (dashed: model's view)", fontsize=9)
    ax.set_axis_off()

    for j, (name, values, is_signed) in enumerate(entries, start=1):
        ax = figure.add_subplot(grid[2 * (j // columns), j % columns])
        cmap = signed_cmap if is_signed else unsigned_cmap
        shown = overlay(photo, values, crop_box=box, signed=is_signed, cmap=cmap, alpha=alpha, percentile=percentile)
        shown = shown if outline is None else outline.draw(shown)
        ax.imshow(np.asarray(shown))
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()

    for row in range(rows):
        first = max(1, row * columns)  # cell index of the row's first map
        last = min(cells, (row + 1) * columns)
        kinds = [e[2] for e in entries[first - 1 : last - 1]]
        for start, stop, is_signed in _runs(kinds):
            col0 = (first + start) % columns
            holder = figure.add_subplot(grid[2 * row + 1, col0 : col0 + (stop - start)])
            holder.set_axis_off()
            cax = holder.inset_axes((0.15, 0.55, 0.7, 0.35))
            cmap = get_cmap(signed_cmap if is_signed else unsigned_cmap, is_signed)
            norm = Normalize(-1.0, 1.0) if is_signed else Normalize(0.0, 1.0)
            bar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, orientation="horizontal")
            if is_signed:
                bar.set_ticks([-1.0, 0.0, 1.0], labels=["against", "0", "for"])
            else:
                bar.set_ticks([0.0, 1.0], labels=["0", f"p{percentile:g}"])
            bar.ax.tick_params(labelsize=7, length=2)
            bar.set_label("signed evidence" if is_signed else "magnitude", fontsize=7, labelpad=1)

    if title:
        figure.suptitle(title, fontsize=11)
    return figure


@overload
def shrink(photo: Image.Image, box: Box, max_side: int) -> tuple[Image.Image, Box]: ...
@overload
def shrink(photo: Image.Image, box: None, max_side: int) -> tuple[Image.Image, None]: ...
def shrink(photo: Image.Image, box: Box | None, max_side: int) -> tuple[Image.Image, Box | None]:
    """The photo scaled down for display to at most ``max_side`` pixels on its long side, and the crop box
    (in the photo's pixels) scaled with it."""
    scale = max_side / max(photo.size)
    if scale >= 1.0:
        return photo, box
    size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    sx, sy = size[0] / photo.width, size[1] / photo.height
    small = photo.resize(size, Image.Resampling.LANCZOS)
    if box is None:
        return small, None
    return small, (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def dash_crop(ax: Axes, box: Box | None, size: tuple[int, int]) -> None:
    """Dash the model's crop ``box`` on ``ax`` when it is a part of the ``size`` photo (not all of it)."""
    if box is None:
        return
    left, top, right, bottom = box
    if left > 0.5 or top > 0.5 or right < size[0] - 0.5 or bottom < size[1] - 0.5:
        ax.add_patch(
            Rectangle(
                (left, top), right - left, bottom - top, fill=False, edgecolor="white", linestyle="--", linewidth=1.0
            )
        )


def _runs(kinds: list[bool]) -> list[tuple[int, int, bool]]:
    """Contiguous runs of maps of one kind: one colourbar spans each run."""
    runs: list[tuple[int, int, bool]] = []
    for i, kind in enumerate(kinds):
        if runs and runs[-1][2] == kind:
            runs[-1] = (runs[-1][0], i + 1, kind)
        else:
            runs.append((i, i + 1, kind))
    return runs
