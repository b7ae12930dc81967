"""What an explanation is about, drawn over the picture: a detector's box, or the outline of a segmentation region.

A bright line over a dark halo, so it stays visible over any colour of the map; drawn after the map is blended,
never blended into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..core.errors import InputError

Box = tuple[float, float, float, float]
LINE = (0, 255, 128)
HALO = (0, 0, 0)


@dataclass(frozen=True)
class Outline:
    """A box ``(x0, y0, x1, y1)`` and / or a boolean region ``(H, W)``, in the pixels of a picture of ``size``
    ``(width, height)``."""

    size: tuple[int, int]
    box: Box | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.mask is not None and tuple(self.mask.shape) != (self.size[1], self.size[0]):
            raise InputError(
                f"the outline's mask is {self.mask.shape[1]}×{self.mask.shape[0]} pixels, the picture"
                f" {self.size[0]}×{self.size[1]}",
                "give a mask of the picture's size",
            )

    def resized(self, size: tuple[int, int]) -> Outline:
        """The same outline on a picture of ``size`` ``(width, height)`` (a shrunk copy for display)."""
        if size == self.size:
            return self
        sx, sy = size[0] / self.size[0], size[1] / self.size[1]
        box = None if self.box is None else (self.box[0] * sx, self.box[1] * sy, self.box[2] * sx, self.box[3] * sy)
        mask = None
        if self.mask is not None:
            picture = Image.fromarray(self.mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
            mask = np.asarray(picture) > 127
        return Outline(size, box, mask)

    def draw(self, image: Image.Image) -> Image.Image:
        """A copy of ``image`` (resized outlines when its size differs) with the outline drawn on it."""
        outline = self.resized(image.size)
        out = image.convert("RGB")
        out = out.copy() if out is image else out
        width = max(2, round(min(out.size) / 160))
        if outline.mask is not None:
            out = _draw_mask(out, outline.mask, width)
        if outline.box is not None:
            draw = ImageDraw.Draw(out)
            x0, y0, x1, y1 = outline.box
            draw.rectangle((x0 - 1, y0 - 1, x1 + 1, y1 + 1), outline=HALO, width=width + 2)
            draw.rectangle((x0, y0, x1, y1), outline=LINE, width=width)
        return out


def _draw_mask(image: Image.Image, mask: np.ndarray, width: int) -> Image.Image:
    from scipy import ndimage

    inside = mask.astype(bool)
    edge = inside & ~ndimage.binary_erosion(inside, iterations=width, border_value=0)
    halo = ndimage.binary_dilation(edge, iterations=1) & ~edge
    pixels = np.array(image)
    pixels[halo] = HALO
    pixels[edge] = LINE
    return Image.fromarray(pixels)
