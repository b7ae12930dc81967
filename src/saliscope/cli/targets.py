"""The command line's options for what to explain in a detector or a segmentation model, and their checks.

``--detection K`` / ``--box x0,y0,x1,y1 [--label NAME|INDEX]`` pick a detection of a detector;
``--label NAME [--mask MASK.png | --region x0,y0,x1,y1]`` a class and a region of a segmentation model.
Coordinates are in the photo's pixels (x to the right, y down). Everything that can be checked before the
model loads is checked here; the rest once the model is known (:meth:`Request.check_model`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click
import torch
from torch import nn

from ..core.detection_targets import is_detection_output
from ..core.errors import SaliscopeError, TargetError
from .common import F, with_options

Kind = Literal["classifier", "detector", "segmenter"]
Box = tuple[float, float, float, float]
_KEYS = ("detection", "box", "label", "mask", "region")


def target_options(f: F) -> F:
    """``--detection``, ``--box``, ``--label``, ``--mask`` and ``--region`` (shared by explain and compare)."""
    decorators = [
        click.option(
            "--detection",
            type=click.IntRange(min=0),
            default=None,
            metavar="K",
            help="Detectors: explain the K-th detection, by decreasing score (0: the most confident; the default).",
        ),
        click.option(
            "--box",
            default=None,
            metavar="x0,y0,x1,y1",
            help="Detectors: explain the detection in this box (the photo's pixels: left, top, right, bottom).",
        ),
        click.option(
            "--label",
            default=None,
            metavar="NAME|INDEX",
            help="Detectors: the class of --box (alone: its most confident detection). Segmentation models: "
            "the class to explain (default: the largest one found).",
        ),
        click.option(
            "--mask",
            type=click.Path(path_type=Path),
            default=None,
            metavar="MASK.png",
            help="Segmentation models: explain the class over this region (an image of the photo's size; "
            "nonzero pixels are the region). Default: where the model finds the class.",
        ),
        click.option(
            "--region",
            default=None,
            metavar="x0,y0,x1,y1",
            help="Segmentation models: explain the class over this rectangle (the photo's pixels).",
        ),
    ]
    return with_options(f, decorators)


@dataclass(frozen=True)
class Request:
    """What the target options ask for (all None: nothing; the model's kind then decides)."""

    detection: int | None = None
    box: Box | None = None
    label: str | None = None
    mask: Path | None = None
    region: Box | None = None
    target: str = "predicted"  # --target, which only classifiers take
    top_k: int | None = None

    def given(self) -> list[str]:
        """The options given, as the user wrote them."""
        return [f"--{key}" for key in _KEYS if getattr(self, key) is not None]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in _KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        return out

    def check_model(self, kind: Kind) -> None:
        """Options that do not fit the model's kind: one line naming what to use instead."""
        given = self.given()
        if kind == "classifier":
            if given:
                raise TargetError(
                    f"{given[0]} needs a detector or a segmentation model, and this model is a classifier"
                    " (it returns class scores)",
                    "use target= for a classifier",
                    "use --target CLASS (a class index or a label name) for a classifier",
                )
            return
        predicted = self.target.strip().lower() in ("predicted", "top1", "top-1")
        if kind == "detector":
            wrong = [o for o in given if o in ("--mask", "--region")]
            if wrong:
                raise TargetError(
                    f"{wrong[0]} is for segmentation models, and this model is a detector",
                    None,
                    "explain a detection with --detection K, or a box with --box x0,y0,x1,y1 [--label NAME]",
                )
            if not predicted:
                raise TargetError(
                    f"--target {self.target!r} names a class of a classifier, and this model is a detector",
                    None,
                    "explain one of its detections with --detection K, or a box with --box x0,y0,x1,y1 [--label NAME]",
                )
            if self.top_k is not None:
                raise TargetError(
                    "--top-k ranks a classifier's classes, and this model is a detector",
                    None,
                    "explain its detections one at a time with --detection K",
                )
            if self.detection is not None and self.label is not None:
                raise TargetError(
                    "--label goes with --box (the box's class) or alone (the most confident detection of it),"
                    " not with --detection",
                    None,
                    "drop --label, or use --box x0,y0,x1,y1 --label NAME",
                )
            return
        wrong = [o for o in given if o in ("--detection", "--box")]
        if wrong:
            raise TargetError(
                f"{wrong[0]} is for detectors, and this model is a segmentation model",
                None,
                "name the class with --label NAME, and the region with --mask MASK.png or --region x0,y0,x1,y1",
            )
        if not predicted or self.top_k is not None:
            option = "--top-k" if predicted else f"--target {self.target!r}"
            raise TargetError(
                f"{option} is for classifiers, and this model is a segmentation model",
                None,
                "name the class with --label NAME (and the region with --mask or --region)",
            )


def request(options: dict[str, Any], *, target: str = "predicted", top_k: int | None = None) -> Request:
    """The target options (removed from ``options``), parsed and checked against each other."""
    values = {key: options.pop(key, None) for key in _KEYS}
    found = Request(
        detection=values["detection"],
        box=None if values["box"] is None else parse_box(values["box"], "--box"),
        label=None if values["label"] is None else _nonempty(values["label"], "--label"),
        mask=values["mask"],
        region=None if values["region"] is None else parse_box(values["region"], "--region"),
        target=target,
        top_k=top_k,
    )
    for first, second in (("--detection", "--box"), ("--mask", "--region")):
        if first in found.given() and second in found.given():
            raise TargetError(f"{first} and {second} both say what to explain", None, f"give {first} or {second}")
    detector = [o for o in found.given() if o in ("--detection", "--box")]
    segmenter = [o for o in found.given() if o in ("--mask", "--region")]
    if detector and segmenter:
        raise TargetError(
            f"{detector[0]} is for detectors and {segmenter[0]} for segmentation models",
            None,
            "give the options of your model's kind only",
        )
    return found


def parse_box(text: str, option: str) -> Box:
    """``"x0,y0,x1,y1"`` → four numbers with x1 > x0 and y1 > y0 (one clear error otherwise)."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    if len(parts) != 4 or not all(parts):
        count = len([p for p in parts if p])
        raise TargetError(
            f"{option} needs four numbers x0,y0,x1,y1, got {count} ({text!r})",
            None,
            f"pass {option} x0,y0,x1,y1, e.g. {option} 10,20,200,180 (left, top, right, bottom in pixels)",
        )
    try:
        x0, y0, x1, y1 = (float(p) for p in parts)
    except ValueError:
        raise TargetError(
            f"{option} {text!r} has a part that is not a number",
            None,
            f"pass {option} x0,y0,x1,y1 with four numbers, e.g. {option} 10,20,200,180",
        ) from None
    if not all(map(_finite, (x0, y0, x1, y1))):
        raise TargetError(f"{option} {text!r} is not finite", None, f"pass four finite numbers to {option}")
    if x1 <= x0 or y1 <= y0:
        raise TargetError(
            f"{option} {text!r} is empty: it needs x1 > x0 and y1 > y0",
            None,
            f"pass {option} x0,y0,x1,y1 as left, top, right, bottom (x0 < x1, y0 < y1)",
        )
    return (x0, y0, x1, y1)


def check_inside(box: Box, size: tuple[int, int], option: str) -> None:
    """A box or region must lie within the ``(width, height)`` photo."""
    width, height = size
    x0, y0, x1, y1 = box
    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
        raise TargetError(
            f"{option} {_text(box)} is not inside the {width}×{height} image",
            None,
            f"give {option} within the image: 0 <= x0 < x1 <= {width}, 0 <= y0 < y1 <= {height} (its pixels)",
        )


def _text(box: Box) -> str:
    return ",".join(f"{v:g}" for v in box)


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def _nonempty(text: str, option: str) -> str:
    if not str(text).strip():
        raise TargetError(f"{option} is empty", None, f"pass a label name or a class index to {option}")
    return str(text).strip()


def model_kind(model: nn.Module, device: str, *, size: int = 224) -> Kind:
    """Whether ``model`` is a classifier, a detector or a segmentation model: torchvision's families by class,
    any other model by the output of one pass over a black image."""
    from ..core.model_state import explaining
    from ..methods.detector_layers import dense_model

    known = dense_model(model)
    if known is not None:
        return known[0]
    with explaining(model), torch.no_grad():
        output = model(torch.zeros(1, 3, size, size, device=device))
    if is_detection_output(output) or (isinstance(output, (list, tuple)) and output and isinstance(output[0], dict)):
        return "detector"
    if isinstance(output, dict) and "out" in output:
        output = output["out"]
    if isinstance(output, torch.Tensor) and output.ndim == 4:
        return "segmenter"
    return "classifier"


def label_index(text: str, labels: Any, classes: int | None, option: str = "--label") -> int:
    """``--label`` as a class index: a whole number, or a label name (with "did you mean" help)."""
    from ..core.targets import label_index as by_name

    t = text.strip()
    if t.lstrip("+-").isdigit():
        index = int(t)
        if index < 0 or (classes is not None and index >= classes):
            top = f" (0..{classes - 1})" if classes is not None else ""
            raise TargetError(
                f"{option} {index} is out of range: the model has {classes} classes{top}",
                None,
                f"pass a class index{top} or a label name to {option}",
            )
        return index
    if not labels:
        raise TargetError(f"{option} {text!r} is a label name but the model has no labels", None, "pass a class index")
    try:
        return by_name(t, list(labels))
    except SaliscopeError as exc:
        raise TargetError(f"{option}: {exc.problem}", None, exc.fix) from None
