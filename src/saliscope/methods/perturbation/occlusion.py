"""Occlusion (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...core.cost import CostMeter
from ...core.errors import InputError
from ...core.targets import BoundTarget
from ..base import Attribution, Precision
from .base import PerturbationExplainer
from .fill import Replacement

Size = int | tuple[int, int]


class Occlusion(PerturbationExplainer):
    """Slide a window over the image, hide what it covers, and record how much the score drops.

    A pixel's attribution is ``score(x) - score(x with the window hidden)``, averaged over every window
    that covers it: positive where hiding the pixel lowers the score (evidence for the target),
    negative where it raises it. Windows start every ``stride`` pixels, and one more window is added
    flush with the bottom / right edge when the stride does not land there, so every pixel is covered.
    Cost: ``1 + n_windows`` forward passes per image (the clean image is scored once).

    Returns ``(B, 1, H, W)`` maps; ``extras["window_drops"]`` ``(B, n_rows, n_cols)`` holds each window's
    score drop.

    Args:
        model: the classifier.
        window: window side (or ``(height, width)``) in pixels; None: ``min(H, W) / 14`` rounded
            (16 on 224 × 224), at least 1.
        stride: step between windows; None: half the window (at least 1).
        replacement: what hidden pixels become (see :class:`PerturbationExplainer`).
        value: the constant for ``replacement="constant"``.
        blur_sigma: the blur's standard deviation in pixels for ``replacement="blur"``.
        progress: ``True`` shows a tqdm bar, ``False`` never; ``None`` only for long runs on a terminal.
    """

    name: ClassVar[str] = "occlusion"

    def __init__(
        self,
        model: nn.Module,
        *,
        window: Size | None = None,
        stride: Size | None = None,
        replacement: Replacement = "constant",
        value: float = 0.0,
        blur_sigma: float = 10.0,
        progress: bool | None = None,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        precision: Precision = "auto",
    ) -> None:
        super().__init__(
            model,
            replacement=replacement,
            value=value,
            blur_sigma=blur_sigma,
            progress=progress,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            precision=precision,
        )
        self.window = None if window is None else _pair(window, "window")
        self.stride = None if stride is None else _pair(stride, "stride")
        self._windows = 1  # windows per image at the last call's image size (for rows_per_sample)

    @property
    def rows_per_sample(self) -> int:
        return self._windows + 1

    def params(self) -> dict[str, Any]:
        return {**super().params(), "window": self.window, "stride": self.stride}

    def geometry(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The window and stride used on an image of ``height × width`` pixels."""
        window = self.window or (max(1, round(min(height, width) / 14)),) * 2
        if window[0] > height or window[1] > width:
            raise InputError(
                f"the occlusion window {window[0]}×{window[1]} is larger than the image {height}×{width}",
                "pass a smaller window (e.g. window=min(H, W) // 8) or omit it to choose one",
                f"pass a smaller --window (at most {min(height, width)} on this {height}×{width} model input), or omit "
                "it to choose one",
            )
        stride = self.stride or (max(1, window[0] // 2), max(1, window[1] // 2))
        return window, stride

    def _perturb(self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter) -> list[Attribution]:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        (wh, ww), (sh, sw) = self.geometry(height, width)
        rows = window_cover(height, wh, sh, x)  # (ny, H): which pixel rows each window row covers
        cols = window_cover(width, ww, sw, x)  # (nx, W)
        ny, nx = int(rows.shape[0]), int(cols.shape[0])
        self._windows = ny * nx

        def keep(sample: Tensor, index: Tensor) -> Tensor:
            # Perturbation 0 is the clean image; perturbation 1 + w hides window w (row-major).
            w = (index - 1).clamp(min=0)
            hidden = rows[w // nx].unsqueeze(2) * cols[w % nx].unsqueeze(1)
            return (1 - hidden * (index > 0).to(x.dtype).view(-1, 1, 1)).unsqueeze(1)

        scores = self.all_scores(net, x, targets, meter, n=1 + ny * nx, keep=keep)  # (K, B, 1 + ny*nx)
        drops = (scores[:, :, :1] - scores[:, :, 1:]).view(len(targets), -1, ny, nx)
        # Sum of the drops of the windows covering each pixel, over how many windows cover it.
        rows64, cols64 = rows.double(), cols.double()
        total = torch.einsum("yh,kbyx,xw->kbhw", rows64, drops, cols64)
        count = torch.outer(rows64.sum(0), cols64.sum(0))
        maps = (total / count).unsqueeze(2).to(x.dtype)  # (K, B, 1, H, W)
        return [
            Attribution(
                maps[k],
                scores=scores[k, :, 0].to(x.dtype),
                extras={"window_drops": drops[k].to(x.dtype)},
                params={"window": [wh, ww], "stride": [sh, sw]},
            )
            for k in range(len(targets))
        ]


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows every ``stride`` pixels, plus one flush with the far edge if needed."""
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] + window < size:
        starts.append(size - window)
    return starts


def window_cover(size: int, window: int, stride: int, like: Tensor) -> Tensor:
    """``(n_windows, size)`` 0/1 matrix: row i marks the pixels window i covers along one axis."""
    starts = torch.tensor(window_starts(size, window, stride), device=like.device)
    pixels = torch.arange(size, device=like.device)
    covered = (pixels >= starts.unsqueeze(1)) & (pixels < starts.unsqueeze(1) + window)
    return covered.to(like.dtype)


def _pair(value: Size, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise InputError(f"{name} must be a positive int or a pair of them, got {value!r}", f"use e.g. {name}=16")
    return pair[0], pair[1]
