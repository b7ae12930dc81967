"""What ``saliscope explain`` and ``saliscope compare`` do for a detector or a segmentation model.

The photo goes in whole, never centre-cropped: a detector gets it at its own size (it resizes inside; a
photo longer than 1333 pixels is scaled down first), a segmentation model with its shorter side at the
preprocessing's ``resize``. Boxes, regions and detections are given and reported in the photo's pixels.

For each image: one clean pass lists the detections (label, score, box) or the classes found (by area), the
target is bound once on that output (the K-th detection, the box, the class over a region) and every method
explains that same bound target; the explained box or region is drawn over every overlay and the panel, and
the image's record in ``summary.json`` holds the detections and the target.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from .. import registry
from ..core.detection_targets import BoundDetections, BoxTarget, DetectionTarget, detections_of, ranked
from ..core.errors import ImageError, TargetError
from ..core.model_state import explaining
from ..core.output_targets import SegmentationTarget
from ..core.targets import BoundTarget
from ..methods.base import Explainer
from ..viz import Outline, display_hint, overlay, panel, save_npy, save_png
from . import targets
from .pipeline import Rendered, Settings, Source, _method_record, label_of

MAX_SIDE = 1333  # torchvision's detectors resize to at most this many pixels anyway
SHOWN = 5
_BACKGROUND = ("__background__", "background", "__bg__", "bg")


@dataclass(frozen=True)
class Prepared:
    """One photo ready to explain: the model input, the bound target and how to show and record it."""

    photo: Image.Image
    x: Tensor  # (1, 3, H, W) on the model's device
    target: BoundTarget
    outline: Outline
    heading: str  # the panel's title
    found: dict[str, Any]  # what the clean pass found (detections / classes), for the record
    explained: dict[str, Any]  # the target, in the photo's pixels, for the record


class Planner:
    """The target options of one run; :meth:`plan` decides, once the model is loaded, whether the run is a
    detector's or a segmentation model's (a classifier without these options keeps the usual path)."""

    def __init__(self, request: targets.Request) -> None:
        self.request = request

    def plan(self, model: nn.Module, settings: Settings) -> Dense | None:
        from ..methods.detector_layers import dense_model

        if not self.request.given() and dense_model(model) is None:
            return None  # a classifier (or a model that will say what it is on its first pass)
        size = int(getattr(getattr(model, "preprocess", None), "size", 224))
        kind = targets.model_kind(model, settings.device, size=size)
        self.request.check_model(kind)
        if kind == "classifier":
            return None
        return Dense(kind, self.request, settings.device)


@dataclass(frozen=True)
class Dense:
    kind: str  # "detector" or "segmenter"
    request: targets.Request
    device: str

    def summary(self) -> dict[str, Any]:
        """The run's target for ``summary.json``."""
        if self.kind == "detector" and not self.request.given():
            return {"kind": self.kind, "detection": 0}
        return {"kind": self.kind, **self.request.as_dict()}

    # -- one photo ---------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, photo: Image.Image, say: Callable[[str], None], path: str) -> Prepared:
        """The input, the clean pass (printed), and the target bound on it."""
        if self.kind == "detector":
            return self._detection(model, photo, say, path)
        return self._segmentation(model, photo, say, path)

    def _input(self, model: nn.Module, photo: Image.Image, scale: float) -> Tensor:
        preprocess = getattr(model, "preprocess", None)
        size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
        picture = photo if size == photo.size else photo.resize(size, Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
        x = preprocess.normalize(pixels) if preprocess is not None else pixels
        return x.unsqueeze(0).contiguous().to(self.device)

    def _detection(self, model: nn.Module, photo: Image.Image, say: Callable[[str], None], path: str) -> Prepared:
        labels = getattr(model, "labels", None)
        if self.request.box is not None:
            targets.check_inside(self.request.box, photo.size, "--box")
        scale = min(1.0, MAX_SIDE / max(photo.size))
        x = self._input(model, photo, scale)
        sx, sy = x.shape[-1] / photo.width, x.shape[-2] / photo.height
        with explaining(model), torch.no_grad():
            output = model(x)
        (det,) = detections_of(output, 1)
        order = [int(j) for j in ranked(det)]
        found: list[dict[str, Any]] = []
        for rank, j in enumerate(order):
            corners = [float(v) for v in det["boxes"][j].detach().cpu()]
            shown_box = [round(corners[0] / sx, 2), round(corners[1] / sy, 2), round(corners[2] / sx, 2)]
            shown_box.append(round(corners[3] / sy, 2))
            c = int(det["labels"][j])
            score = float(det["scores"][j])
            found.append({"rank": rank, "label": label_of(labels, c), "class": c, "score": score, "box": shown_box})
        say(f"{path}  ({photo.width}x{photo.height}): {len(found)} detection{'s' if len(found) != 1 else ''}")
        for entry in found[:SHOWN]:
            text = ",".join(f"{v:.0f}" for v in entry["box"])
            say(f"  {entry['rank']}. {entry['label'][:32]:<32} {entry['score']:7.2%}  box {text}")
        if len(found) > SHOWN:
            say(f"  ... and {len(found) - SHOWN} more (--detection 0..{len(found) - 1})")
        request = self.request
        from ..methods.perturbation.drise import detector_classes

        classes = detector_classes(model)
        index: int = 0 if request.detection is None else request.detection
        target: BoxTarget | DetectionTarget
        if request.box is not None:
            box = (request.box[0] * sx, request.box[1] * sy, request.box[2] * sx, request.box[3] * sy)
            label = None if request.label is None else targets.label_index(request.label, labels, classes)
            target = BoxTarget(box, label)
        elif request.label is not None:
            wanted = targets.label_index(request.label, labels, classes)
            hits = [int(e["rank"]) for e in found if e["class"] == wanted]
            if not hits:
                seen = ", ".join(dict.fromkeys(str(e["label"]) for e in found[:8])) or "nothing"
                raise TargetError(
                    f"the detector found no {label_of(labels, wanted)!r} in {path} (it found: {seen})",
                    None,
                    "pick a label it found, a detection with --detection K, or a box: --box x0,y0,x1,y1 --label NAME",
                )
            index = hits[0]
            target = DetectionTarget(index)
        else:
            target = DetectionTarget(index)
        bound = target.bind(output, 1)
        assert isinstance(bound, BoundDetections)
        x0, y0, x1, y1 = (float(v) for v in bound.boxes[0])
        photo_box: tuple[float, float, float, float] = (x0 / sx, y0 / sy, x1 / sx, y1 / sy)
        c = int(bound.labels[0])
        clean = None if bound.scores is None else float(bound.scores[0])
        what = f"detection {index}" if isinstance(target, DetectionTarget) else "the box"
        shown = "" if clean is None else f" ({clean:.1%})"
        written = ",".join(f"{v:.0f}" for v in (round(v, 2) for v in photo_box))
        say(f"  explaining {what}: {label_of(labels, c)}{shown}, box {written}")
        explained: dict[str, Any] = {
            "kind": "detection" if isinstance(target, DetectionTarget) else "box",
            "detection": index if isinstance(target, DetectionTarget) else None,
            "box": [round(v, 2) for v in photo_box],
            "class": c,
            "label": label_of(labels, c),
            "score": clean,
            "iou_threshold": bound.iou_threshold,
        }
        heading = f"{Path(path).name}: {what}, {label_of(labels, c)}{shown}"
        return Prepared(photo, x, bound, Outline(photo.size, box=photo_box), heading, {"detections": found}, explained)

    def _segmentation(self, model: nn.Module, photo: Image.Image, say: Callable[[str], None], path: str) -> Prepared:
        labels = getattr(model, "labels", None)
        mask, region = self._region(photo)  # a bad --mask / --region fails before any work
        resize = int(getattr(getattr(model, "preprocess", None), "resize", 0) or min(photo.size))
        x = self._input(model, photo, resize / min(photo.size))
        with explaining(model), torch.no_grad():
            output = model(x)
        maps = output["out"] if isinstance(output, dict) else output
        predicted = maps[0].detach().float().argmax(0).cpu()  # (h, w)
        counts = torch.bincount(predicted.flatten(), minlength=int(maps.shape[1])).double() / predicted.numel()
        order = [int(c) for c in counts.argsort(descending=True, stable=True) if counts[c] > 0]
        classes = int(maps.shape[1])
        say(f"{path}  ({photo.width}x{photo.height}): {len(order)} class{'es' * (len(order) != 1)} found")
        for rank, c in enumerate(order[:SHOWN]):
            say(f"  {rank + 1}. {label_of(labels, c)[:32]:<32} {float(counts[c]):7.1%} of the image")
        request = self.request
        if request.label is not None:
            index = targets.label_index(request.label, labels, classes)
        else:
            named = [c for c in order if label_of(labels, c).strip().lower() not in _BACKGROUND]
            index = (named or order)[0]
        target = SegmentationTarget(index, None if mask is None else _resized_mask(mask, tuple(x.shape[-2:])))
        try:
            bound = target.bind(output, 1)
        except TargetError as exc:
            raise TargetError(
                exc.problem.replace("in image 0", f"in {path}"),
                None,
                "give the region with --mask MASK.png or --region x0,y0,x1,y1, or name a class it finds with --label",
            ) from None
        if mask is None:
            region_mask = bound.mask[0].numpy() > 0  # type: ignore[attr-defined]
            mask = (
                np.asarray(
                    Image.fromarray(region_mask.astype(np.uint8) * 255).resize(photo.size, Image.Resampling.NEAREST)
                )
                > 127
            )
        label = label_of(labels, index)
        say(f"  explaining {label} over {region} ({float(mask.mean()):.1%} of the image)")
        explained: dict[str, Any] = {"kind": "segmentation", "class": index, "label": label, "region": region}
        explained["area"] = float(mask.mean())
        if request.mask is not None:
            explained["mask"] = str(request.mask)
        if request.region is not None:
            explained["rectangle"] = list(request.region)
        found = {"classes": [{"class": c, "label": label_of(labels, c), "area": float(counts[c])} for c in order]}
        heading = f"{Path(path).name}: {label} over {region}"
        return Prepared(photo, x, bound, Outline(photo.size, mask=mask), heading, found, explained)

    def _region(self, photo: Image.Image) -> tuple[np.ndarray | None, str]:
        """The region to explain as a photo-sized boolean mask (None: where the model finds the class)."""
        request = self.request
        if request.region is not None:
            targets.check_inside(request.region, photo.size, "--region")
            x0, y0, x1, y1 = request.region
            mask = np.zeros((photo.height, photo.width), dtype=bool)
            mask[math.floor(y0) : math.ceil(y1), math.floor(x0) : math.ceil(x1)] = True
            return mask, "the rectangle"
        if request.mask is not None:
            return read_mask(request.mask, photo.size), "the mask"
        return None, "the region it predicts"

    # -- explain ---------------------------------------------------------------------------------------
    def explain_image(
        self,
        source: Source,
        model: nn.Module,
        explainers: dict[str, Explainer],
        settings: Settings,
        say: Callable[[str], None],
    ) -> Rendered:
        """Explain one photo with every method, in memory (the same contract as the classifier's path)."""
        ready = self.prepare(model, source.read(), say, source.path)
        photo, size = ready.photo, ready.photo.size
        box = (0.0, 0.0, float(size[0]), float(size[1]))
        explanations = {}
        timing = []
        for name, explainer in explainers.items():
            e = explainer.explain(ready.x, ready.target)
            explanations[name] = e
            timing.append(f"{name} {e.cost.seconds:.2f}s")
        say("  " + ", ".join(timing))
        files: list[tuple[str, Any, Callable[[Any, Path], Path]]] = []
        columns, methods = [], []
        for name, e in explanations.items():
            hint = display_hint(name, settings.evidence)
            saliency = e.saliency(hint.reduce, hint.evidence)[0, 0]
            png, npy = f"{source.stem}/{name}.png", f"{source.stem}/{name}.npy"
            shown = overlay(photo, saliency, crop_box=box, signed=hint.signed, alpha=settings.alpha)
            files.append((png, ready.outline.draw(shown), save_png))
            files.append((npy, e.attributions[0].detach().to("cpu", torch.float32).numpy(), save_npy))
            title = registry.get(name).title
            columns.append((title, saliency, hint.signed))
            methods.append(_method_record(e[0], title, 1, hint.reduce, hint.evidence, png, npy))
        figure = panel(photo, columns, crop_box=None, title=ready.heading, alpha=settings.alpha, outline=ready.outline)
        panel_name = f"{source.stem}/panel.png"
        files.append((panel_name, figure, save_png))
        record = {
            "path": source.path,
            "output_dir": source.stem,
            "size": [photo.width, photo.height],
            "input_size": [int(ready.x.shape[-1]), int(ready.x.shape[-2])],
            "crop_box": list(box),
            **ready.found,
            "explained": [{"target": ready.explained, "panel": panel_name, "methods": methods}],
        }
        return Rendered(files, record)


def read_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A mask image as a boolean array of the photo's ``size`` (nonzero pixels, or opaque ones where the file
    has transparency); one clear error for a file that cannot be read, of another size, or empty."""
    from PIL import ImageOps

    from ..io import load_image

    load_image(path)  # the same checks and messages as for photos (missing, not an image, too small, ...)
    with Image.open(path) as raw:
        picture = ImageOps.exif_transpose(raw)
        if "A" in picture.getbands() and int(np.asarray(picture.getchannel("A")).min()) < 255:
            mask = np.asarray(picture.getchannel("A")) > 0
        else:
            mask = np.asarray(picture.convert("L")) > 0
    if (mask.shape[1], mask.shape[0]) != size:
        raise ImageError(
            f"the mask {path} is {mask.shape[1]}×{mask.shape[0]} pixels, the image {size[0]}×{size[1]}",
            None,
            "give --mask an image of the photo's size (nonzero pixels mark the region), or use --region x0,y0,x1,y1",
        )
    if not mask.any():
        raise ImageError(
            f"the mask {path} is empty (no nonzero pixel)",
            None,
            "mark the region with nonzero pixels, or use --region x0,y0,x1,y1",
        )
    return mask


def _resized_mask(mask: np.ndarray, size: Sequence[int]) -> Tensor:
    """A photo-sized boolean mask at the model input's ``(H, W)`` (nearest neighbour)."""
    height, width = int(size[0]), int(size[1])
    picture = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    out = torch.from_numpy(np.asarray(picture) > 127)
    if not bool(out.any()):  # a sliver thinner than a model pixel: keep its nearest pixel
        ys, xs = np.nonzero(mask)
        row = min(int(ys.mean() * height / mask.shape[0]), height - 1)
        out[row, min(int(xs.mean() * width / mask.shape[1]), width - 1)] = True
    return out
