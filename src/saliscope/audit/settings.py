"""What an audit measures and how: the settings both the runner and the report read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .. import registry
from ..core.views import Evidence
from .regions import Box
from .verdicts import Thresholds

TargetMode = Literal["predicted", "label"]


@dataclass(frozen=True)
class AuditSettings:
    """What an audit measures and how.

    Args:
        method: a registered method name (``saliscope methods``); Grad-CAM by default, one pass per image.
        target: ``"predicted"`` explains each image's predicted class (what the model decided on);
            ``"label"`` explains its folder's class, which must then name one of the model's labels.
        batch_size: images per model call.
        grid: cells per side of the stored per-image maps and of the mean maps.
        border: width of the border frame, as a fraction of each side.
        corner: side of each corner square, as a fraction of the input's side.
        spot: sides of the fixed-spot windows tried, as fractions of the input's side.
        region: the user's box ``(x0, y0, x1, y1)`` in fractions of the model's input, or None.
        evidence: which evidence counts as saliency mass (default: the method's, positive when signed).
        thresholds: when a region flags a class (:class:`~.verdicts.Thresholds`).
        top_n: most suspicious images shown per class.
        limit: audit at most this many images (taken round-robin over classes), or None for all.
        view_size: side of the mean images.
        options: options of the method (layer, seed, chunk size, ...).
    """

    method: str = "gradcam"
    target: TargetMode = "predicted"
    batch_size: int = 32
    grid: int = 16
    border: float = 0.1
    corner: float = 0.3
    spot: tuple[float, ...] = (0.1, 0.2, 0.3)
    region: Box | None = None
    evidence: Evidence | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    top_n: int = 8
    limit: int | None = None
    view_size: int = 96
    options: registry.MethodOptions = field(default_factory=registry.MethodOptions)
