"""Explanations in a notebook: the map over its input as a figure, and the rich display Jupyter shows.

:meth:`saliscope.Explanation.show` and the explanation's ``_repr_png_`` / ``_repr_html_`` call these. Figures are
built without pyplot (nothing global changes, no figure manager keeps them alive) as an :class:`InlineFigure`,
which a notebook displays when a cell returns it — once, not a second time at the end of the cell.
"""

from __future__ import annotations

import base64
import html
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from PIL import Image

from ..core.errors import InputError
from ..core.views import DEFAULT_ALPHA, EVIDENCE, Evidence
from .colormaps import get_cmap
from .display import DisplayHint, display_hint
from .files import png_bytes
from .overlay import Box, overlay
from .panel import dash_crop, shrink

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ..core.explanation import Explanation

MAX_SHOWN = 8  # samples drawn by the rich display of a batch; show() draws them all
COLUMNS = 4
_PANEL_IN = 3.4  # inches per sample
_WORDS = {"signed": "signed", "positive": "positive part", "negative": "negative part", "absolute": "magnitude"}


class InlineFigure(Figure):
    """A matplotlib figure that a notebook shows as PNG when a cell returns it (no pyplot needed)."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


# ----- words --------------------------------------------------------------------------------------------


def method_title(name: str) -> str:
    """A method's title for figures ("Integrated Gradients"); its name when it is not a registered method."""
    from ..core.errors import MethodError
    from ..registry import get  # on use: the registry imports every method

    try:
        return get(name).title
    except MethodError:
        return name


def view_words(view: DisplayHint, channels: int) -> str:
    """``"signed (RGB summed)"``, ``"magnitude (max |RGB|)"``, ``"positive part"``."""
    reduce = {"sum": "RGB summed", "mean": "RGB averaged", "sum-abs": "sum of |RGB|", "max-abs": "max |RGB|"}
    words = _WORDS.get(view.evidence, view.evidence)
    return f"{words} ({reduce.get(view.reduce, view.reduce)})" if channels > 1 else words


def class_words(e: Explanation, i: int) -> str:
    """``"tiger cat (282)"`` for sample ``i`` of a class explanation; the target's kind otherwise."""
    classes = e.classes
    if classes is None:
        return type(e.target).__name__
    c = int(classes[i])
    labels = e.labels
    return f"{labels[c]} ({c})" if labels is not None and 0 <= c < len(labels) else f"class {c}"


def cost_words(e: Explanation) -> str:
    c = e.cost
    passes = f"{c.forward_passes} forward"
    if c.backward_passes:
        passes += f" + {c.backward_passes} backward"
    return f"{c.seconds:.2f} s, {passes} passes"


# ----- pictures -------------------------------------------------------------------------------------------


def _check_evidence(evidence: Evidence | None) -> None:
    if evidence is not None and evidence not in EVIDENCE:
        raise InputError(f"unknown evidence {evidence!r}", f"use one of {', '.join(EVIDENCE)}, or None")


def input_photo(e: Explanation, i: int) -> Image.Image | None:
    """Sample ``i`` of the batch explained, as pixels: un-normalised by the model's preprocessing, else
    each channel stretched to its own range (which undoes any per-channel normalisation)."""
    if e.inputs is None:
        return None
    x = e.inputs[i].detach().to("cpu", torch.float32)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        return None
    to_pil = getattr(e.preprocess, "to_pil", None)
    if x.shape[0] == 3 and callable(to_pil):
        try:
            photo = to_pil(x)
            if isinstance(photo, Image.Image):
                return photo
        except Exception:  # a preprocess of another library: fall back to stretching
            pass
    low = x.flatten(1).amin(1).view(-1, 1, 1)
    high = x.flatten(1).amax(1).view(-1, 1, 1)
    unit = ((x - low) / (high - low).clamp(min=1e-12)).clamp(0, 1)
    arr = (unit.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr).convert("RGB")


def _photos(e: Explanation, image: Any) -> list[tuple[Image.Image, Box | None]]:
    """One (photo, crop box of the model's input in it) per sample."""
    n = len(e)
    if image is None:
        out: list[tuple[Image.Image, Box | None]] = []
        h, w = e.attributions.shape[-2:]
        for i in range(n):
            photo = input_photo(e, i)
            # No input kept (an explanation built by hand): the map alone, on grey.
            out.append((photo if photo is not None else Image.new("RGB", (w, h), (128, 128, 128)), None))
        return out
    from ..io import load_image  # on use: io reads files, viz only draws

    given = list(image) if isinstance(image, (list, tuple)) else [image]
    if len(given) != n:
        raise InputError(
            f"{len(given)} photo(s) given for an explanation of {n} samples",
            "pass one photo per sample (a list), or show one sample: e[i].show(photo)",
        )
    return [(photo, _crop_box(e, photo)) for photo in map(load_image, given)]


def _crop_box(e: Explanation, photo: Image.Image) -> Box | None:
    """Where the model's input lies on the photo (``preprocess.crop_box``), when that is known and fits."""
    crop_box = getattr(e.preprocess, "crop_box", None)
    size = getattr(e.preprocess, "size", None)
    h, w = e.attributions.shape[-2:]
    if callable(crop_box) and size == h == w:
        return tuple(float(v) for v in crop_box(*photo.size))  # type: ignore[return-value]
    return None


def draw(
    ax: Axes, e: Explanation, i: int, photo: Image.Image, box: Box | None, view: DisplayHint, *, title: bool = True
) -> None:
    """Sample ``i``'s map over ``photo`` into ``ax``, the model's crop dashed when it is part of the photo."""
    photo, box = shrink(photo, box, 768)
    saliency = e.saliency(view.reduce, view.evidence)[i, 0]
    ax.imshow(np.asarray(overlay(photo, saliency, crop_box=box, signed=view.signed, alpha=DEFAULT_ALPHA)))
    dash_crop(ax, box, photo.size)
    if title:
        ax.set_title(class_words(e, i), fontsize=10)
    ax.set_axis_off()


def _colourbar(figure: Figure, view: DisplayHint, axes: Any) -> None:
    norm = Normalize(-1.0, 1.0) if view.signed else Normalize(0.0, 1.0)
    bar = figure.colorbar(
        ScalarMappable(norm=norm, cmap=get_cmap(None, view.signed)),
        ax=axes,
        orientation="horizontal",
        fraction=0.05,
        pad=0.03,
        aspect=30,
    )
    if view.signed:
        bar.set_ticks([-1.0, 0.0, 1.0], labels=["against", "0", "for"])
    else:
        bar.set_ticks([0.0, 1.0], labels=["0", "p99"])
    bar.set_label("signed evidence (for / against the class)" if view.signed else "magnitude", fontsize=8)
    bar.ax.tick_params(labelsize=8, length=2)


def show_explanation(
    e: Explanation,
    image: Any = None,
    *,
    evidence: Evidence | None = None,
    ax: Axes | None = None,
    limit: int | None = None,
) -> Figure:
    """What :meth:`Explanation.show` draws; ``limit`` caps the samples drawn (the rich display's batch)."""
    _check_evidence(evidence)
    view = display_hint(e.method, evidence)
    channels = int(e.attributions.shape[1])
    if ax is not None:
        if len(e) != 1:
            raise InputError(
                f"ax= draws one sample, and this explanation has {len(e)}",
                "pick one: e[i].show(ax=ax), or leave ax out to draw them all",
            )
        ((photo, box),) = _photos(e, image)
        draw(ax, e, 0, photo, box, view)
        figure = ax.get_figure()
        assert isinstance(figure, Figure)
        return figure

    n = len(e) if limit is None else min(len(e), limit)
    if n < len(e):
        e = e[:n]
        image = None if image is None else list(image)[:n]
    photos = _photos(e, image)
    columns = min(n, COLUMNS)
    rows = math.ceil(n / columns)
    aspect = max(0.4, min(1.6, photos[0][0].height / photos[0][0].width))
    figure = InlineFigure(figsize=(_PANEL_IN * columns, _PANEL_IN * aspect * rows + 1.1), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, squeeze=False)
    for k, cell in enumerate(grid.flat):
        if k < n:
            draw(cell, e, k, *photos[k], view)
        else:
            cell.set_axis_off()
    _colourbar(figure, view, grid)
    more = f" (first {n} of {len(e)})" if n < len(e) else ""
    figure.suptitle(f"{method_title(e.method)} · {view_words(view, channels)}{more}", fontsize=11)
    return figure


def explanation_bundle(e: Explanation) -> dict[str, Any]:
    """``{"image/png": ..., "text/html": ...}`` from one drawing: what a notebook shows for ``e``."""
    png = png_bytes(show_explanation(e, limit=MAX_SHOWN))
    return {"image/png": png, "text/html": _html(e, png)}


def explanation_png(e: Explanation) -> bytes:
    return png_bytes(show_explanation(e, limit=MAX_SHOWN))


def explanation_html(e: Explanation) -> str:
    return _html(e, explanation_png(e))


def _html(e: Explanation, png: bytes) -> str:
    esc = html.escape
    view = display_hint(e.method)
    samples = ", ".join(class_words(e, i) for i in range(min(len(e), MAX_SHOWN)))
    if len(e) > MAX_SHOWN:
        samples += f", … ({len(e)} samples)"
    facts = [samples, cost_words(e)]
    if e.completeness_gap is not None and len(e) == 1 and e.scores is not None:
        facts.append(f"completeness gap {float(e.completeness_gap[0]):+.3g}")
    alt = f"{method_title(e.method)} map of {samples}"
    data = base64.b64encode(png).decode("ascii")
    return (
        '<figure class="saliscope-explanation" style="margin:0">'
        f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}" style="max-width:100%;height:auto">'
        f'<figcaption style="font-size:.85em;color:#444"><b>{esc(method_title(e.method))}</b> · '
        f"{esc(view_words(view, int(e.attributions.shape[1])))} · {esc(' · '.join(facts))}</figcaption></figure>"
    )
