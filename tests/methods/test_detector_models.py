"""torchvision's detectors and segmenters (random weights, small inputs): one map per image from every kind of
method, CAMs on the image path at the level torchvision itself would use, and the model left as found."""

from __future__ import annotations

import pytest
import torch
from detection_models import BUILDERS, SEGMENTERS, build, photos
from model_snapshot import assert_same, snapshot

import saliscope as ss
from saliscope import registry
from saliscope.methods.detector_layers import probe
from saliscope.registry import MethodOptions

# The detection each family explains: one whose score moves with the image under random weights (the top
# detection of a random Faster R-CNN survives every mask unchanged, so D-RISE would have nothing to show).
INDEX = {"fasterrcnn_mobilenet_v3_large_320_fpn": 4}
HEIGHT, WIDTH = 48, 56


def _not_flat(maps: torch.Tensor) -> bool:
    return all(float(maps[i].max() - maps[i].min()) > 0 for i in range(maps.shape[0]))


@pytest.mark.parametrize("name", list(BUILDERS))
def test_each_detector_family_gives_one_map_per_image_and_is_left_as_found(name):
    model = build(name).train()  # a detector in training mode takes targets: explaining switches it, then back
    next(iter(model.parameters())).requires_grad_(False)
    before = snapshot(model)
    x = photos(2, HEIGHT, WIDTH)
    target = ss.DetectionTarget(INDEX.get(name, 0))
    for explainer in (ss.Gradient(model), ss.GradCAM(model, evidence="signed"), ss.DRISE(model, n_masks=8, grid=4)):
        e = explainer.explain(x, target)
        assert e.attributions.shape[0] == 2 and e.attributions.shape[-2:] == (HEIGHT, WIDTH), explainer
        assert torch.isfinite(e.attributions).all() and _not_flat(e.attributions), explainer
        if isinstance(explainer, ss.GradCAM):
            layers = [e.params["layer"]] if isinstance(e.params["layer"], str) else e.params["layer"]
            assert all(layer.startswith("backbone.") for layer in layers)
    assert_same(before, snapshot(model))


OPTIONS = MethodOptions(seed=0, n_samples=2, n_steps=2, n_perturbations=8, window=24, n_superpixels=6)
CHEAP = {  # Score-CAM and Ablation-CAM re-run the detector once per channel: a few channels here
    "scorecam": lambda m: ss.ScoreCAM(m, max_channels=3),
    "ablationcam": lambda m: ss.AblationCAM(m, layer="backbone.body.0.0"),
}


@pytest.mark.parametrize("name", [n for n in registry.available() if not registry.get(n).needs_attention])
def test_every_method_explains_a_box_of_faster_rcnn_with_one_map_per_image(name):
    model = build("fasterrcnn_mobilenet_v3_large_320_fpn")
    x = photos(2, HEIGHT, WIDTH)
    with torch.no_grad():
        clean = model(x)
    box = torch.stack([d["boxes"][4] for d in clean])
    label = tuple(int(d["labels"][4]) for d in clean)
    explainer = CHEAP[name](model) if name in CHEAP else registry.create(name, model, OPTIONS)
    e = explainer.explain(x, ss.BoxTarget(box, label))
    assert e.attributions.shape[0] == 2 and e.attributions.shape[-2:] == (HEIGHT, WIDTH)
    assert torch.isfinite(e.attributions).all()


def test_the_level_of_a_box_is_the_one_torchvision_pools_it_from():
    model = build("maskrcnn")
    x = photos(1, HEIGHT, WIDTH)
    found = probe(model, x)
    assert found is not None and [lv.key for lv in found.readable()][:4] == ["0", "1", "2", "3"]
    sides = torch.tensor([8.0, 40.0, 100.0, 200.0, 420.0, 900.0])  # in input pixels
    boxes = torch.stack([torch.zeros_like(sides), torch.zeros_like(sides), sides, sides], 1)
    mine = [lv.key for lv in found.level_for(boxes)]
    # torchvision's own choice: its RoI pooler's level mapper, set up on this image's features
    features, sizes = {}, {}
    hooks = [
        model.backbone.register_forward_hook(lambda m, i, o: features.update(o)),
        model.transform.register_forward_hook(lambda m, i, o: sizes.update(shapes=o[0].image_sizes)),
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    pool = model.roi_heads.box_roi_pool
    scale = sizes["shapes"][0][0] / HEIGHT, sizes["shapes"][0][1] / WIDTH
    inside = boxes * torch.tensor([scale[1], scale[0], scale[1], scale[0]])
    pool(features, [inside], sizes["shapes"])  # sets up pool.map_levels for these features
    theirs = [pool.featmap_names[int(k)] for k in pool.map_levels([inside])]
    assert mine == theirs and len(set(mine)) > 1


def test_boxes_needing_different_levels_are_explained_level_by_level():
    model = build("retinanet")
    x = photos(2, HEIGHT, WIDTH)
    boxes = torch.tensor([[2.0, 2.0, 14.0, 14.0], [0.0, 0.0, 56.0, 48.0]])  # a small and a large object
    target = ss.BoxTarget(boxes, label=1, iou_threshold=0.01)
    together = ss.GradCAM(model, evidence="signed").explain(x, target)
    assert together.params["layer"] == ["backbone.fpn.layer_blocks.0", "backbone.fpn.layer_blocks.1"]
    for i in range(2):
        alone = ss.GradCAM(model, evidence="signed").explain(x[i : i + 1], ss.BoxTarget(boxes[i], 1, 0.01))
        assert alone.params["layer"] == together.params["layer"][i]
        torch.testing.assert_close(together.attributions[i : i + 1], alone.attributions, rtol=1e-4, atol=1e-7)


def test_a_layer_off_the_image_path_is_refused_with_the_levels_named():
    model = build("fasterrcnn_mobilenet_v3_large_320_fpn")
    x = photos(1, HEIGHT, WIDTH)
    with pytest.raises(ss.SaliscopeError, match=r"'roi_heads.box_head.fc6' is not on the image path.*returns 10 rows"):
        ss.GradCAM(model, layer="roi_heads.box_head.fc6").explain(x, ss.DetectionTarget(0))
    with pytest.raises(ss.SaliscopeError, match=r"'rpn.head.conv' runs 3 times per image \(once per feature level\)"):
        ss.GradCAM(model, layer="rpn.head.conv").explain(x, ss.DetectionTarget(0))
    named = ss.GradCAM(model, layer="backbone.body.3").explain(x, ss.DetectionTarget(0))
    assert named.params["layer"] == "backbone.body.3" and named.attributions.shape == (1, 1, HEIGHT, WIDTH)


@pytest.mark.parametrize("name", list(SEGMENTERS))
def test_each_segmenter_gives_one_map_per_image_from_its_backbone(name):
    model = build(name).train()
    before = snapshot(model)
    x = photos(2, HEIGHT, WIDTH)
    mask = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    mask[10:30, 20:40] = True
    target = ss.SegmentationTarget(1, mask)
    cam = ss.GradCAM(model, evidence="signed").explain(x, target)
    assert cam.params["layer"] == ("backbone.16" if "mobilenet" in name else "backbone.layer4")  # 'out' / 'high'
    gradient = ss.Gradient(model).explain(x, target)
    for e in (cam, gradient):
        assert e.attributions.shape[0] == 2 and e.attributions.shape[-2:] == (HEIGHT, WIDTH)
        assert torch.isfinite(e.attributions).all() and _not_flat(e.attributions)
    assert_same(before, snapshot(model))
