"""Where in the model's input a shortcut can sit: the border, the four corners, the four edges, a user's box,
a fixed spot.

A region is an axis-aligned box in *fractions* of the model's input (``x`` to the right, ``y`` down, so
``(0, 0, 0.2, 0.2)`` is the top-left 20 % × 20 % corner), or the complement of one (the border is
everything outside its inner box). Fractions make one definition fit every input size; a box is snapped
to whole input pixels (at least one) when masses are measured, and its area is that pixel count.

A saliency map's *mass* in a region is the share of the map's (non-negative) total that falls inside it.
All regions of a batch are measured from one summed-area table (Crow 1984, "Summed-area tables for
texture mapping"): four look-ups per box, whatever its size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..core.errors import InputError

Box = tuple[float, float, float, float]
RegionKind = Literal["border", "corner", "edge", "region", "spot"]
CORNERS: tuple[str, ...] = ("top-left", "top-right", "bottom-left", "bottom-right")
EDGES: tuple[str, ...] = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class Region:
    """A named box ``(x0, y0, x1, y1)`` in fractions of the input; ``outside=True`` means its complement."""

    name: str
    box: Box
    kind: RegionKind = "region"
    outside: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", check_box(self.box, what=f"region {self.name!r}"))

    def pixels(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(r0, r1, c0, c1)``: rows ``r0:r1`` and columns ``c0:c1`` of an ``height × width`` input."""
        x0, y0, x1, y1 = self.box
        r0, r1 = _snap(y0, y1, height)
        c0, c1 = _snap(x0, x1, width)
        return r0, r1, c0, c1

    def area(self, height: int, width: int) -> float:
        """The share of the input's pixels the region covers, once snapped to whole pixels."""
        r0, r1, c0, c1 = self.pixels(height, width)
        inside = (r1 - r0) * (c1 - c0) / (height * width)
        return 1.0 - inside if self.outside else inside

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "box": list(self.box), "outside": self.outside}


def check_box(box: Sequence[float], *, what: str = "region") -> Box:
    """A box of four fractions with ``0 <= x0 < x1 <= 1`` and ``0 <= y0 < y1 <= 1``."""
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be four numbers x0,y0,x1,y1, got {box!r}", "pass e.g. 0,0,0.2,0.2") from None
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise InputError(
            f"{what} ({x0:g},{y0:g},{x1:g},{y1:g}) is not a box inside the image",
            "give x0 < x1 and y0 < y1, as fractions of the input in [0, 1] (e.g. 0,0,0.2,0.2)",
        )
    return (x0, y0, x1, y1)


def _snap(low: float, high: float, n: int) -> tuple[int, int]:
    """Fractions → whole pixel indices ``[a, b)``, never empty."""
    a = min(max(round(low * n), 0), n - 1)
    b = min(max(round(high * n), a + 1), n)
    return a, b


def standard_regions(*, border: float = 0.1, corner: float = 0.3, user: Box | None = None) -> tuple[Region, ...]:
    """The regions every audit measures: the border frame, the four corners, the four edges, and the
    user's box if given.

    ``border``: width of the frame, as a fraction of each side (0.1: the outer 10 % on all four sides,
    36 % of the area). ``corner``: side of each corner square, as a fraction of the input's side (0.3:
    9 % of the area each) — wide enough to hold a corner marker as a CAM sees it: a 7×7 layer blurs
    a small marker over about two of its cells, some 30 % of the side. The edges are bands along one
    side each, as deep as a corner (30 % of the area each): a stripe or a banner along one side holds
    most of the evidence there but only a part of the frame, which spreads its area over all four sides.
    """
    if not 0.0 < border < 0.5:
        raise InputError(f"border width {border} must be in (0, 0.5)", "use e.g. 0.1 (the outer 10% of each side)")
    if not 0.0 < corner <= 0.5:
        raise InputError(f"corner size {corner} must be in (0, 0.5]", "use e.g. 0.2 (20% of each side)")
    c = corner
    regions = [
        Region("border", (border, border, 1.0 - border, 1.0 - border), "border", outside=True),
        Region("top-left", (0.0, 0.0, c, c), "corner"),
        Region("top-right", (1.0 - c, 0.0, 1.0, c), "corner"),
        Region("bottom-left", (0.0, 1.0 - c, c, 1.0), "corner"),
        Region("bottom-right", (1.0 - c, 1.0 - c, 1.0, 1.0), "corner"),
        Region("top", (0.0, 0.0, 1.0, c), "edge"),
        Region("bottom", (0.0, 1.0 - c, 1.0, 1.0), "edge"),
        Region("left", (0.0, 0.0, c, 1.0), "edge"),
        Region("right", (1.0 - c, 0.0, 1.0, 1.0), "edge"),
    ]
    if user is not None:
        regions.append(Region("region", user, "region"))
    return tuple(regions)


def summed_area(mass: Tensor) -> Tensor:
    """``(B, H, W)`` → ``(B, H + 1, W + 1)`` float64 table; ``T[b, r, c]`` = sum of ``mass[b, :r, :c]``."""
    table = mass.to(torch.float64).cumsum(-1).cumsum(-2)
    return torch.nn.functional.pad(table, (1, 0, 1, 0))


def box_sums(table: Tensor, r0: int, r1: int, c0: int, c1: int) -> Tensor:
    """``(B,)`` sums of rows ``r0:r1``, columns ``c0:c1`` from a :func:`summed_area` table."""
    return table[:, r1, c1] - table[:, r0, c1] - table[:, r1, c0] + table[:, r0, c0]


def region_masses(table: Tensor, regions: Sequence[Region]) -> Tensor:
    """``(B, R)`` float64: each map's mass in each region, from the table of maps that sum to 1."""
    height, width = table.shape[-2] - 1, table.shape[-1] - 1
    total = table[:, height, width]
    columns = []
    for region in regions:
        inside = box_sums(table, *region.pixels(height, width))
        columns.append(total - inside if region.outside else inside)
    return torch.stack(columns, dim=1) if columns else table.new_zeros(table.shape[0], 0)


def grid_sums(table: Tensor, grid: int) -> Tensor:
    """``(B, grid, grid)`` float64: the map summed over a ``grid × grid`` partition of the input.

    Cell edges fall on whole pixels (``floor(i * H / grid)``), so the cells tile the input exactly and a
    map summing to 1 gives cells summing to 1, whatever ``H`` and ``grid``.
    """
    height, width = table.shape[-2] - 1, table.shape[-1] - 1
    if grid > min(height, width):
        raise InputError(
            f"a {grid}×{grid} grid is finer than the {height}×{width} input",
            f"use a grid of at most {min(height, width)} cells",
        )
    rows = torch.tensor([i * height // grid for i in range(grid + 1)], device=table.device)
    cols = torch.tensor([j * width // grid for j in range(grid + 1)], device=table.device)
    corners = table[:, rows][:, :, cols]  # (B, grid + 1, grid + 1)
    return corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1] + corners[:, :-1, :-1]


def place(box: Box) -> str:
    """Where a box's centre lies, in words: ``"top-left"``, ``"top"``, ..., ``"centre"`` (thirds of each side)."""
    x = (box[0] + box[2]) / 2.0
    y = (box[1] + box[3]) / 2.0
    row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else ""
    col = "left" if x < 1 / 3 else "right" if x > 2 / 3 else ""
    return "-".join(p for p in (row, col) if p) or "centre"
