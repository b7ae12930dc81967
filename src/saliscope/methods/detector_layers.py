"""Which layer a CAM reads in a detector or a segmenter: one on the image path, at the level the box needs.

A torchvision detector sends its images through a backbone (and a feature pyramid) whose batch is the
images, then through heads whose batch is the region proposals (the RoI heads of Faster / Mask / Keypoint
R-CNN) or which run once per feature level (the RPN head, RetinaNet's and FCOS's heads). A CAM must read a
layer whose batch is the images and which runs once per image: a RoI-head layer gives one map per proposal
(150 maps for one image), and a head called per level would be read at its last level only. So for a
detector the candidate layers are the backbone's modules that run once and return a spatial map of the
images' batch, and the automatic choice is the feature level the heads read for the explained box:

- **Faster / Mask / Keypoint R-CNN**: the FPN level the box's RoI features are pooled from, by torchvision's
  own rule (``LevelMapper``: level 4 for a 224-pixel box, one level up per doubling, clamped to the pooled
  levels), so the map reads the very features the box was classified from;
- **RetinaNet**: the level whose anchor sizes are nearest the box's size;
- **FCOS**: the level whose size range holds the box (objects of 8–16 strides);
- **SSD / SSDlite**: the level whose default boxes are nearest the box's size;
- other torchvision-style detectors: the level whose stride is nearest an eighth of the box;
- **segmenters** (DeepLabV3, FCN, LRASPP): the backbone's last output (``'out'`` / ``'high'``), the one
  the classifier reads; the auxiliary branch is never chosen.

Box sizes are measured in the detector's own pixels (it resizes its input). A batch whose boxes need
different levels is explained level by level, so a batch gives the maps each image gives alone. A layer
named by the user must be on the image path too; the error for one that is not says why and lists levels.

A detector also pads the resized image to a multiple of its stride; a layer's grid covers the padded image.
:class:`DenseLayerGrid` resamples the part of the grid that covers the image, so the map lies over the input
where the features came from.
"""

from __future__ import annotations

import math
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.errors import MethodError
from ..core.model_state import explaining, hooks
from ..core.targets import BoundTarget
from .base import Attribution
from .layers import LayerGrid

Kind = Literal["detector", "segmenter"]
Family = Literal["rcnn", "retinanet", "fcos", "ssd", "detector", "segmenter"]
_FCOS_SIZE_PER_STRIDE = 8 * math.sqrt(2)  # objects of 8 to 16 strides are matched to a level (geometric middle)
_GENERIC_SIZE_PER_STRIDE = 8.0


def dense_model(model: nn.Module) -> tuple[Kind, Family, str] | None:
    """``(kind, family, prefix)`` when ``model`` is (or wraps, at ``prefix``) a torchvision detector or
    segmenter; None for any other model (which then keeps the general layer rule)."""
    if "torchvision" not in sys.modules:  # a torchvision model means torchvision is imported
        return None
    for name, module in model.named_modules():
        found = _family(module)
        if found is not None:
            return found[0], found[1], f"{name}." if name else ""
    return None


def _family(module: nn.Module) -> tuple[Kind, Family] | None:
    from torchvision.models import detection, segmentation
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    if isinstance(module, detection.generalized_rcnn.GeneralizedRCNN):
        return "detector", "rcnn"
    if isinstance(module, detection.retinanet.RetinaNet):
        return "detector", "retinanet"
    if isinstance(module, detection.fcos.FCOS):
        return "detector", "fcos"
    if isinstance(module, detection.ssd.SSD):
        return "detector", "ssd"
    if isinstance(getattr(module, "transform", None), GeneralizedRCNNTransform) and isinstance(
        getattr(module, "backbone", None), nn.Module
    ):
        return "detector", "detector"
    if isinstance(module, (segmentation.DeepLabV3, segmentation.FCN, segmentation.LRASPP)):
        return "segmenter", "segmenter"
    return None


@dataclass(frozen=True)
class DenseLayerGrid(LayerGrid):
    """A layer of a detector or segmenter. ``extent``: the fraction of the grid's rows and columns that covers
    the (resized) image; the rest covers the detector's padding. :meth:`to_maps` resamples that part onto a grid
    of about as many cells, so that upsampling the map to the input puts every cell where it came from."""

    extent: tuple[float, float] = (1.0, 1.0)
    level: str | None = None  # the backbone output this layer produces ('0', 'p6', 'out'), if any

    def to_maps(self, activation: Tensor) -> Tensor:
        maps = super().to_maps(activation)
        fy, fx = self.extent
        if fy >= 1.0 and fx >= 1.0:
            return maps
        n, _, h, w = maps.shape
        rows, cols = h * fy, w * fx  # the image's extent, in cells
        out_h, out_w = max(1, round(rows)), max(1, round(cols))
        # Sample at the centres of out_h × out_w cells spanning [0, rows) × [0, cols) of the grid (align_corners=False).
        ys = ((torch.arange(out_h, dtype=maps.dtype, device=maps.device) + 0.5) * rows / out_h) * 2 / h - 1
        xs = ((torch.arange(out_w, dtype=maps.dtype, device=maps.device) + 0.5) * cols / out_w) * 2 / w - 1
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).expand(n, out_h, out_w, 2)
        return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True)
class Level:
    """A feature map the heads read: its key in the backbone's output, the module producing it (None when no
    module's output is that tensor, e.g. an FPN level made by a bare max-pool), its stride and object size."""

    key: str
    layer: str | None
    stride: float  # pixels of the resized image per cell (a power of two, as torchvision infers it)
    size: float  # the typical size of the objects this level detects, in the detector's pixels


@dataclass(frozen=True)
class LayerPart:
    """Run a CAM on ``grid`` for the targets ``targets`` (indices into the call's list), on ``rows`` of the
    batch (None: all of them)."""

    grid: LayerGrid
    targets: tuple[int, ...]
    rows: Tensor | None = None


@dataclass(frozen=True)
class DenseLayers:
    """What one probe pass says about a detector's or segmenter's layers, for inputs of one size."""

    kind: Kind
    family: Family
    grids: dict[str, DenseLayerGrid]  # the readable layers, in execution order
    refused: dict[str, str]  # other modules: why a CAM cannot read them
    levels: tuple[Level, ...]  # the backbone's outputs, in order
    scale: tuple[float, float]  # the detector's pixels per input pixel (rows, columns)
    pooled: tuple[int, ...] = ()  # R-CNN: the levels its RoI pooler reads (indices into levels)
    images: int = 1
    notes: dict[str, Any] = field(default_factory=dict)

    def named(self, layer: str) -> DenseLayerGrid:
        """The grid of a layer the user named; MethodError saying why when a CAM cannot read it."""
        if layer in self.grids:
            return self.grids[layer]
        why = self.refused.get(layer, "is not a module of this model")
        raise MethodError(f"layer {layer!r} {why}", self.candidates())

    def candidates(self) -> str:
        levels = [f"{lv.layer} (level {lv.key!r}, stride {lv.stride:g})" for lv in self.levels if lv.layer]
        path = "the image path (backbone / FPN), whose batch is the images"
        if levels:
            return f"read a layer on {path}: the feature levels are {', '.join(levels)}; or omit the layer"
        names = list(self.grids)[-6:]
        if not names:
            return "use a gradient or perturbation method"
        return f"read a layer on {path}, e.g. {', '.join(names)}; or omit the layer"

    def readable(self) -> list[Level]:
        return [lv for lv in self.levels if lv.layer is not None and lv.layer in self.grids]

    def level_for(self, boxes: Tensor | None) -> list[Level]:
        """The level the heads read for each box ``(N, 4)`` in input pixels (one level for ``None``)."""
        readable = self.readable()
        if not readable:
            raise MethodError(
                f"found no feature level of this {self.kind} that a CAM can read",
                "name a backbone layer with layer=..., or use a gradient or perturbation method",
                "name a backbone layer with --layer, or use a gradient or perturbation method",
            )
        if self.kind == "segmenter":
            outputs = [lv for lv in readable if lv.key != "aux"] or readable
            return [outputs[-1]] * (1 if boxes is None else int(boxes.shape[0]))
        if boxes is None:  # no box to size the level by: the level of an object half the image's size
            return [self._nearest(readable, 0.5 * self.notes["image_side"])]
        b = boxes.detach().double().cpu()
        widths = (b[:, 2] - b[:, 0]).clamp(min=1e-6) * self.scale[1]
        sizes = (widths * (b[:, 3] - b[:, 1]).clamp(min=1e-6) * self.scale[0]).sqrt()
        if self.family == "rcnn" and self.pooled:
            return [self._pooled_level(float(s), readable) for s in sizes]
        return [self._nearest(readable, float(s)) for s in sizes]

    def _pooled_level(self, size: float, readable: list[Level]) -> Level:
        """torchvision's ``LevelMapper`` (FPN paper, eq. 1): level ``floor(4 + log2(size / 224))``, clamped."""
        from torchvision.ops.poolers import LevelMapper

        pooled = [self.levels[i] for i in self.pooled]
        ks = [round(math.log2(lv.stride)) for lv in pooled]
        mapper = LevelMapper(ks[0], ks[-1])
        index = int(mapper([torch.tensor([[0.0, 0.0, size, size]], dtype=torch.float64)])[0])
        chosen = pooled[min(index, len(pooled) - 1)]
        if chosen in readable:
            return chosen
        return self._nearest(readable, chosen.size)

    @staticmethod
    def _nearest(levels: list[Level], size: float) -> Level:
        return min(levels, key=lambda lv: abs(math.log(max(size, 1e-6) / lv.size)))

    def plan(self, targets: list[BoundTarget]) -> list[LayerPart]:
        """How to run a CAM over ``targets``: one part when every box needs the same level, else one part per
        target and level, on the rows that need it."""
        per_target = []
        for t in targets:
            boxes = target_boxes(t)
            per_target.append(self.level_for(boxes) if boxes is not None else self.level_for(None) * t.batch_size)
        every = {lv for levels in per_target for lv in levels} or set(self.level_for(None))
        if len(every) == 1:
            (level,) = every
            return [LayerPart(self._grid(level), tuple(range(len(targets))))]
        parts = []
        for k, levels in enumerate(per_target):
            for level in dict.fromkeys(levels):
                rows = torch.tensor([i for i, lv in enumerate(levels) if lv == level], dtype=torch.long)
                parts.append(LayerPart(self._grid(level), (k,), rows))
        return parts

    def _grid(self, level: Level) -> DenseLayerGrid:
        assert level.layer is not None
        return self.grids[level.layer]


def target_boxes(target: BoundTarget) -> Tensor | None:
    """The boxes ``(B, 4)`` a bound detection target refers to, or None for other targets."""
    boxes = getattr(target, "boxes", None)
    return boxes if isinstance(boxes, Tensor) and boxes.ndim == 2 and boxes.shape[-1] == 4 else None


def probe(model: nn.Module, x: Tensor) -> DenseLayers | None:
    """One forward pass of ``x[:1]`` through a torchvision detector or segmenter (None for other models):
    which of its layers a CAM can read, and its feature levels."""
    found = dense_model(model)
    if found is None:
        return None
    kind, family, prefix = found
    inner = model.get_submodule(prefix[:-1]) if prefix else model
    names = {id(m): n for n, m in model.named_modules() if n}
    # What each call returned: its identity, shape and type, never the tensor (a detector's activations at
    # full resolution would take gigabytes). A level's producer is the last call that returned an object with
    # its identity: from its creation on, the level is alive, so no other tensor can share it.
    outputs: dict[str, list[_Out]] = {}
    order: list[tuple[str, int]] = []
    seen: dict[str, Any] = {}

    def record(module: nn.Module, _args: Any, output: Any) -> None:
        name = names[id(module)]
        outputs.setdefault(name, []).append(_Out.of(output))
        order.append((name, id(output)))

    def backbone_in(_module: nn.Module, args: Any) -> None:
        seen["padded"] = tuple(args[0].shape[-2:])

    def backbone_out(_module: nn.Module, _args: Any, output: Any) -> None:
        seen["features"] = output

    def transformed(_module: nn.Module, _args: Any, output: Any) -> None:
        seen["resized"] = tuple(int(v) for v in output[0].image_sizes[0])

    backbone = inner.get_submodule("backbone")
    with ExitStack() as stack:  # every hook is removed on the way out, also when one fails to register
        stack.callback(backbone.register_forward_pre_hook(backbone_in).remove)
        stack.callback(backbone.register_forward_hook(backbone_out).remove)
        if kind == "detector":
            stack.callback(inner.get_submodule("transform").register_forward_hook(transformed).remove)
        with hooks([m for n, m in model.named_modules() if n], record), explaining(model), torch.no_grad():
            model(x[:1])
    height, width = int(x.shape[-2]), int(x.shape[-1])
    padded = seen.get("padded", (height, width))
    resized = seen.get("resized", padded)
    extent = (resized[0] / padded[0], resized[1] / padded[1])
    path = f"{prefix}backbone."
    grids: dict[str, DenseLayerGrid] = {}
    refused: dict[str, str] = {}
    for name, outs in outputs.items():
        why = _refusal(name, outs, padded, path if kind == "detector" else prefix)
        shape = outs[0].shape
        if why is None and shape is not None:
            grids[name] = DenseLayerGrid(name, "nchw", (shape[-2], shape[-1]), extent=extent)
        elif why is not None:
            refused[name] = why
    for name, _module in model.named_modules():
        if name and name not in outputs:
            refused[name] = "never runs in the model's forward pass"
    features = seen.get("features")
    items = list(features.items()) if isinstance(features, dict) else list(enumerate(_as_list(features)))
    levels = []
    for i, (key, tensor) in enumerate(items):
        if not isinstance(tensor, Tensor) or tensor.ndim != 4:
            continue
        # the outermost module returning this very tensor (a parent's hook runs after its children's)
        made = [name for name, identity in order if identity == id(tensor)]
        layer = made[-1] if made and made[-1] in grids else None
        if layer is not None and outputs[layer][0].shape != tuple(tensor.shape):
            layer = None  # an earlier, freed tensor that had the same identity
        stride = 2.0 ** round(math.log2(resized[0] / int(tensor.shape[-2])))
        levels.append(Level(str(key), layer, stride, _object_size(inner, family, i, stride, resized)))
    for level in levels:
        if level.layer is not None:
            grids[level.layer] = replace(grids[level.layer], level=level.key)
    pooled: tuple[int, ...] = ()
    if family == "rcnn":
        names_pooled = getattr(getattr(getattr(inner, "roi_heads", None), "box_roi_pool", None), "featmap_names", ())
        pooled = tuple(i for i, lv in enumerate(levels) if lv.key in list(names_pooled))
    return DenseLayers(
        kind,
        family,
        grids,
        refused,
        tuple(levels),
        (resized[0] / height, resized[1] / width),
        pooled,
        notes={"image_side": math.sqrt(resized[0] * resized[1])},
    )


def _as_list(features: Any) -> list[Any]:
    if isinstance(features, Tensor):
        return [features]
    return list(features) if isinstance(features, (list, tuple)) else []


@dataclass(frozen=True)
class _Out:
    """One call's output as the probe keeps it: its type and, for a tensor, its shape."""

    kind: str
    shape: tuple[int, ...] | None

    @staticmethod
    def of(output: Any) -> _Out:
        if isinstance(output, Tensor):
            return _Out("Tensor", tuple(int(v) for v in output.shape))
        return _Out(type(output).__name__, None)


def _refusal(name: str, outs: list[_Out], padded: tuple[int, int], path: str) -> str | None:
    """Why a CAM cannot read the module ``name`` (None when it can)."""
    if len(outs) > 1:
        return f"runs {len(outs)} times per image (once per feature level), so it has no one map per image"
    shape = outs[0].shape
    if not name.startswith(path):
        rows = f" (it returns {shape[0]} rows for one image)" if shape else ""
        return f"is not on the image path: it runs on region proposals or detections{rows}"
    if shape is None:
        return f"outputs a {outs[0].kind}, not a spatial map"
    if len(shape) != 4:
        return f"outputs shape {shape}, not a spatial map"
    if shape[0] != 1:
        return f"returns {shape[0]} rows for one image: it runs on region proposals, not on the image"
    h, w = shape[-2], shape[-1]
    if h * w <= 1 or h > padded[0] or w > padded[1]:
        return f"outputs shape {shape}, not a spatial map of the image"
    sy, sx = padded[0] / h, padded[1] / w
    if abs(sy - sx) > 0.25 * max(sy, sx) + 1.0:
        return f"outputs shape {shape}, not a spatial map of the image"
    return None


def _object_size(model: nn.Module, family: Family, index: int, stride: float, resized: tuple[int, int]) -> float:
    """The typical size (pixels of the resized image) of the objects the heads find at level ``index``."""
    anchors = getattr(model, "anchor_generator", None)
    if family == "retinanet" and anchors is not None and index < len(anchors.sizes):
        sizes = anchors.sizes[index]
        return float(math.exp(sum(math.log(s) for s in sizes) / len(sizes)))
    if family == "fcos" and anchors is not None and index < len(anchors.sizes):
        return float(anchors.sizes[index][0]) * _FCOS_SIZE_PER_STRIDE
    if family == "ssd" and anchors is not None and index + 1 < len(anchors.scales):
        side = math.sqrt(resized[0] * resized[1])
        return math.sqrt(anchors.scales[index] * anchors.scales[index + 1]) * side
    if family == "rcnn":
        return 224.0 * stride / 16.0  # LevelMapper's canonical pair: 224-pixel boxes at stride 16
    return _GENERIC_SIZE_PER_STRIDE * stride


def join_rows(pieces: list[tuple[Tensor, Attribution]], batch: int) -> Attribution:
    """One target's attribution from parts explained on different rows (and layers) of the batch."""
    first = pieces[0][1]
    attributions = first.attributions.new_zeros((batch, *first.attributions.shape[1:]))
    scores = None if first.scores is None else first.scores.new_zeros(batch)
    layers: list[str] = [""] * batch
    for rows, part in pieces:
        attributions[rows.to(attributions.device)] = part.attributions
        if scores is not None and part.scores is not None:
            scores[rows.to(scores.device)] = part.scores
        for r in rows.tolist():
            layers[r] = str(part.params.get("layer", ""))
    return Attribution(attributions, scores=scores, params={"layer": layers})
