"""One verdict per class: does the model's evidence for it sit in a place that has nothing to do with content?

A class is flagged ("possible shortcut") when, for some region R — the border, a corner, an edge, the
user's region, or the class's own fixed spot — all of these hold (:class:`Thresholds`, all configurable):

1. **Concentration**: the class's mean *excess* in R is at least ``min_excess`` (0.35). The excess,
   ``(mass - area) / (1 - area)``, is the share of the evidence lying outside R's fair share that was drawn
   into R: 0 for an even map, 1 for a map wholly inside R. With the defaults a 9 % corner needs about
   41 % of the mass, the 36 % border about 58 %.
2. **Consistency**: at least ``min_share`` (0.5) of the class's images reach that excess individually —
   the concentration is shared by many images, not made by a few extreme ones. A fixed spot needs
   ``min_spot_share`` (0.8): the spot is found where the class's mean map peaks, so it sits wherever the
   class's content usually is; an artefact at a fixed place draws nearly every image there, content
   that moves around only some of them.
3. **Class-specific, for a fixed spot only**: the class's mass in its spot exceeds the other classes'
   mass in the same spot by ``min_contrast`` (0.2). Objects are often centred, so every class of a photo
   data set draws mass to the middle; a spot only counts as a shortcut when it belongs to one class.
   Border, corners, edges and the user's region need no contrast: evidence there is suspicious by
   itself, and a cue planted in every class (one marker per class) would show in several classes at once.

Classes with fewer than ``min_images`` images with a usable map are not judged.

Why these numbers (Grad-CAM on the benchmark's TinyCNN, trained to ≥ 0.99 test accuracy; seeds 0–2):
a model that reads a planted marker puts most of its evidence there in nearly every image — excess
0.6–0.8 in the marker's corner, edge or spot, share 0.96–1. On the control data (no marker; the content
is a striped texture placed anywhere near the centre) no corner, edge or border holds more than its
area's share (excess ≤ 0.03), but one class's evidence can gather on the texture: in 64-pixel data its
spot reaches excess 0.35–0.43 with a share of only 0.50–0.67, which ``min_spot_share`` keeps from
flagging. The end-to-end tests check both sides on trained models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..methods.base import Explainer
from .regions import Box, RegionKind, place

Status = Literal["shortcut", "clear", "too-few"]


@dataclass(frozen=True)
class Thresholds:
    """When a region flags a class; see the module docstring for what each number means."""

    min_excess: float = 0.35
    min_share: float = 0.5
    min_spot_share: float = 0.8
    min_contrast: float = 0.2
    min_images: int = 5

    def as_dict(self) -> dict[str, float | int]:
        return {
            "min_excess": self.min_excess,
            "min_share": self.min_share,
            "min_spot_share": self.min_spot_share,
            "min_contrast": self.min_contrast,
            "min_images": self.min_images,
        }


@dataclass(frozen=True)
class RegionFinding:
    """What the audit measured for one class in one region (fractions of the input; masses in [0, 1])."""

    name: str
    kind: RegionKind
    box: Box
    outside: bool
    area: float  # share of the input the region covers
    mass: float  # the class's mean share of saliency mass in the region
    spread: float  # standard deviation of that share over the class's images
    share: float  # fraction of the class's images whose own excess reaches min_excess
    others: float | None  # mean mass of the other classes' images in the same region (None: one class)
    histogram: tuple[int, ...]  # images per tenth of mass, [0, 0.1), ..., [0.9, 1]

    @property
    def excess(self) -> float:
        return 0.0 if self.area >= 1.0 else (self.mass - self.area) / (1.0 - self.area)

    @property
    def contrast(self) -> float | None:
        return None if self.others is None else self.mass - self.others

    def failed(self, t: Thresholds) -> str | None:
        """Why this region does not flag its class (None: it does)."""
        if self.excess < t.min_excess:
            return f"excess {self.excess:.2f} < {t.min_excess:.2f}"
        need = t.min_spot_share if self.kind == "spot" else t.min_share
        if self.share < need:
            return f"only {self.share:.0%} of the images concentrate there individually, need {need:.0%}"
        if self.kind == "spot":
            if self.contrast is None:
                return "a spot needs other classes to compare with"
            if self.contrast < t.min_contrast:
                return (
                    f"other classes put {self.others:.0%} there too"
                    f" (contrast {self.contrast:.2f} < {t.min_contrast:.2f})"
                )
        return None

    def describe(self, input_size: tuple[int, int]) -> str:
        """The region in words, e.g. ``top-left corner (20% of each side, 4% of the area)``."""
        width, height = input_size
        x0, y0, x1, y1 = self.box
        if self.kind == "border":
            return f"border (outer {x0:.0%} of each side, {self.area:.0%} of the area)"
        if self.kind == "corner":
            return f"{self.name} corner ({x1 - x0:.0%} of each side, {self.area:.0%} of the area)"
        if self.kind == "edge":
            depth = y1 - y0 if self.name in ("top", "bottom") else x1 - x0
            side = "height" if self.name in ("top", "bottom") else "width"
            return f"{self.name} edge (a band {depth:.0%} of the {side} deep, {self.area:.0%} of the area)"
        pixels = (
            f"x {round(x0 * width)}–{round(x1 * width)}, y {round(y0 * height)}–{round(y1 * height)} px"
            f" of the {width}×{height} input, {self.area:.0%} of the area"
        )
        if self.kind == "spot":
            return f"fixed spot at the {place(self.box)} ({pixels})"
        return f"given region ({pixels})"


@dataclass(frozen=True)
class ClassVerdict:
    """One class's verdict; ``lead`` is the region the line speaks of: the smallest flagged border, corner,
    edge or user region, else the flagged spot; for a clear class, the strongest concentration."""

    name: str
    images: int
    measured: int  # images with a usable (non-flat) map
    status: Status
    flagged: tuple[str, ...]
    lead: RegionFinding | None
    findings: tuple[RegionFinding, ...]
    line: str


def judge(
    name: str,
    *,
    images: int,
    measured: int,
    findings: tuple[RegionFinding, ...],
    thresholds: Thresholds,
    input_size: tuple[int, int],
) -> ClassVerdict:
    """Apply the thresholds to one class's findings and word the verdict line."""
    t = thresholds
    if measured < t.min_images or not findings:
        line = (
            f"class {name!r}: only {measured} image{'s' if measured != 1 else ''} with a usable saliency map"
            f" — too few to judge (need {t.min_images})"
        )
        return ClassVerdict(name, images, measured, "too-few", (), None, findings, line)
    flagged = [f for f in findings if f.failed(t) is None]
    strongest = max(findings, key=lambda f: f.excess)
    if flagged:
        # A named region reads better than a spot ("the top-left corner"); the spot leads only when it is
        # the sole region that flags (a marker away from the corners, edges and border). Of the named ones
        # the smallest says most: a corner marker also fills the two edges and the frame around it.
        named = [f for f in flagged if f.kind != "spot"]
        lead = min(named or flagged, key=lambda f: (f.area, -f.excess))
        others = "" if lead.others is None else f"; other classes: {lead.others:.0%}"
        line = (
            f"class {name!r}: {lead.mass:.0%} of saliency mass in the {lead.describe(input_size)} across"
            f" {measured} images ({lead.share:.0%} of them individually{others}) — possible shortcut"
        )
        return ClassVerdict(name, images, measured, "shortcut", tuple(f.name for f in flagged), lead, findings, line)
    why = strongest.failed(t)
    line = (
        f"class {name!r}: no shortcut found across {measured} images — strongest concentration"
        f" {strongest.mass:.0%} of saliency mass in the {strongest.describe(input_size)}; {why}"
    )
    return ClassVerdict(name, images, measured, "clear", (), strongest, findings, line)


def method_notes(explainer: Explainer) -> list[str]:
    """A warning when the method's maps are ones the default thresholds were not measured on.

    The thresholds come from CAM maps (region-level, smooth). Raw input-gradient maps are speckled and
    spread over every edge in the image. On the benchmark's tag model (64 px, an "R" tag top-left on every
    "pneumonia" image, a TinyCNN that reads it: test accuracy 1.0, swapped 0.0), the mass in the tag's
    corner was 66 % with Grad-CAM, 54 % Score-CAM, 65 % occlusion (all flagged) and 36 % with Integrated
    Gradients (flagged through the top edge), but 20 % with the plain gradient (excess 0.12) and 12 % with
    SmoothGrad (0.03): both left the class clear.
    """
    from ..methods.gradient import Gradient
    from ..wrappers.smoothing import SmoothGrad

    inner = explainer.inner if isinstance(explainer, SmoothGrad) else explainer
    if not isinstance(inner, Gradient):
        return []
    return [
        f"{explainer.name} maps are pixel-level and spread over every edge of an image; the verdict"
        " thresholds were measured with Grad-CAM, and a shortcut read by the model may stay under them"
        " with this method — audit with gradcam (the default), occlusion or lime, or lower --min-excess"
    ]
