"""A planted artefact: the spurious cue a shortcut benchmark puts on one class.

Real data sets carry such cues by accident — a hospital's "R" marker on one scanner's X-rays, a ruler
next to malignant lesions, a watermark on one source's photos — and a classifier learns them instead of
the pathology (Zech et al. 2018, "Variable generalization performance of a deep learning model to
detect pneumonia in chest radiographs"). An :class:`Artefact` describes one such cue (what, where, how
big, which colour) and paints it onto ``(H, W, 3)`` uint8 images; its :meth:`~Artefact.box` and
:meth:`~Artefact.mask` are the ground truth an audit is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, get_args

import numpy as np

from ..core.errors import InputError

ArtefactKind = Literal["tag", "square", "stripe"]
Position = str | tuple[float, float]

# Named spots as fractions of the free range (0 = flush with the left/top edge, 1 = right/bottom);
# corners sit a little inside the edge, as a film marker does.
_SPOTS: dict[str, tuple[float, float]] = {
    "top-left": (0.05, 0.05),
    "top-right": (0.95, 0.05),
    "bottom-left": (0.05, 0.95),
    "bottom-right": (0.95, 0.95),
    "centre": (0.5, 0.5),
    "center": (0.5, 0.5),
}
# A stripe runs along a whole edge; a corner name picks its top or bottom edge.
_EDGES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class Artefact:
    """What to plant, where, how big and in which colour.

    Args:
        kind: ``"square"`` (a filled square), ``"tag"`` (a short text label drawn with PIL's default font,
            like a film marker) or ``"stripe"`` (a band along one border of the image).
        position: one of ``"top-left"``, ``"top-right"``, ``"bottom-left"``, ``"bottom-right"``,
            ``"centre"``, or ``(fx, fy)`` fractions of the free range (``(0, 0)`` flush top-left,
            ``(1, 1)`` flush bottom-right). Stripes take an edge — ``"top"``, ``"bottom"``, ``"left"``,
            ``"right"`` — or a corner name, which picks its top or bottom edge.
        size: fraction of the image side: the square's side, the tag's height, the stripe's thickness.
        colour: RGB, 0–255.
        text: the tag's text.
    """

    kind: ArtefactKind = "square"
    position: Position = "top-left"
    size: float = 0.15
    colour: tuple[int, int, int] = (255, 255, 255)
    text: str = "R"

    def __post_init__(self) -> None:
        if self.kind not in get_args(ArtefactKind):
            raise InputError(f"unknown artefact kind {self.kind!r}", "use kind='square', 'tag' or 'stripe'")
        if not 0.0 < float(self.size) <= 1.0:
            raise InputError(
                f"artefact size must be in (0, 1], got {self.size}", "give a fraction of the side, e.g. 0.15"
            )
        colour = tuple(int(c) for c in self.colour)
        if len(colour) != 3 or any(not 0 <= c <= 255 for c in colour):
            raise InputError(
                f"artefact colour must be three values 0-255, got {self.colour}", "e.g. colour=(255, 0, 0)"
            )
        object.__setattr__(self, "colour", colour)
        object.__setattr__(self, "size", float(self.size))
        if isinstance(self.position, (tuple, list)):
            fx, fy = (float(v) for v in self.position)
            if not (0.0 <= fx <= 1.0 and 0.0 <= fy <= 1.0):
                raise InputError(
                    f"artefact position fractions must be in [0, 1], got {self.position}",
                    "(0, 0) is flush top-left, (1, 1) flush bottom-right",
                )
            object.__setattr__(self, "position", (fx, fy))
        if self.kind == "stripe":
            self._edge()  # raises for a position a stripe cannot take
        elif not isinstance(self.position, tuple) and self.position not in _SPOTS:
            raise InputError(
                f"unknown artefact position {self.position!r}",
                f"use one of {', '.join(k for k in _SPOTS if k != 'center')} or (fx, fy) fractions",
            )
        if self.kind == "tag" and not self.text.strip():
            raise InputError("a tag artefact needs some text", "pass e.g. text='R'")

    def _edge(self) -> str:
        pos = self.position
        if isinstance(pos, str):
            word = pos.split("-")[0]
            if word in _EDGES and (pos in _EDGES or pos in _SPOTS):
                return word
        raise InputError(
            f"a stripe runs along an edge; position {pos!r} names none",
            "use position='top', 'bottom', 'left' or 'right'",
        )

    def box(self, image_size: int) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` in pixels of an ``image_size``² image; ``x1``, ``y1`` exclusive."""
        n = _check_size(image_size)
        side = min(n, max(1, round(self.size * n)))
        if self.kind == "stripe":
            edge = self._edge()
            return {
                "top": (0, 0, n, side),
                "bottom": (0, n - side, n, n),
                "left": (0, 0, side, n),
                "right": (n - side, 0, n, n),
            }[edge]
        height = side
        width = side
        if self.kind == "tag":
            glyphs = _glyph_shape(self.text)
            width = min(n, max(1, round(side * glyphs[1] / glyphs[0])))
        fx, fy = self.position if isinstance(self.position, tuple) else _SPOTS[self.position]
        x0 = round(fx * (n - width))
        y0 = round(fy * (n - height))
        return x0, y0, x0 + width, y0 + height

    def mask(self, image_size: int) -> np.ndarray:
        """``(H, W)`` bool, True on the artefact's box (for a tag: the whole label, not only its strokes).

        This is the region a person would annotate as "not the reason", so it is what an audit is scored
        against and what :func:`saliscope.train.rrr_loss` takes as its irrelevant mask.
        """
        n = _check_size(image_size)
        x0, y0, x1, y1 = self.box(n)
        out = np.zeros((n, n), dtype=bool)
        out[y0:y1, x0:x1] = True
        return out

    def paint(self, image: np.ndarray) -> np.ndarray:
        """A copy of ``image`` ``(H, W, 3)`` uint8 (square) with the artefact drawn on it."""
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1] or image.dtype != np.uint8:
            raise InputError(
                f"paint needs a square (H, W, 3) uint8 image, got {image.shape} {image.dtype}",
                "convert with np.asarray(pil_image.convert('RGB'))",
            )
        out = image.copy()
        x0, y0, x1, y1 = self.box(image.shape[0])
        if self.kind == "tag":
            strokes = _glyph_mask(self.text, x1 - x0, y1 - y0)
            out[y0:y1, x0:x1][strokes] = self.colour
        else:
            out[y0:y1, x0:x1] = self.colour
        return out

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready fields."""
        pos = list(self.position) if isinstance(self.position, tuple) else self.position
        return {"kind": self.kind, "position": pos, "size": self.size, "colour": list(self.colour), "text": self.text}


def _check_size(image_size: int) -> int:
    n = int(image_size)
    if n < 1:
        raise InputError(f"image_size must be positive, got {image_size}", "pass the side in pixels, e.g. 64")
    return n


_RENDER_PX = 64  # glyphs are drawn once at this height, then scaled to the box


@lru_cache(maxsize=32)
def _glyph_raster(text: str) -> np.ndarray:
    """The text's ink, cropped to its bounding box: ``(h, w)`` uint8 coverage, 0–255."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=_RENDER_PX)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (int(right - left) + 4, int(bottom - top) + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, fill=255, font=font)
    ink = np.asarray(canvas)
    rows, cols = np.nonzero(ink > 0)
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _glyph_shape(text: str) -> tuple[int, int]:
    h, w = _glyph_raster(text).shape
    return int(h), int(w)


@lru_cache(maxsize=64)
def _glyph_mask(text: str, width: int, height: int) -> np.ndarray:
    """``(height, width)`` bool: where the text's strokes fall when scaled to fill the box."""
    from PIL import Image

    raster = Image.fromarray(_glyph_raster(text))
    scaled = np.asarray(raster.resize((width, height), resample=Image.Resampling.BILINEAR))
    strokes = scaled >= 128
    strokes.setflags(write=False)  # cached: shared between calls
    return strokes
