"""Targets beyond one class: dict / tuple outputs, segmentation regions, detector boxes, embeddings."""

from __future__ import annotations

import pytest
import torch
import torchvision
from tiny_models import SmallCNN
from torch import nn

import saliscope as ss
from saliscope.core.errors import ModelOutputError, TargetError


class Seg(nn.Module):
    """A 1×1 conv segmentation head: out[:, c] = sum_k W[c, k] x_k, returned as {"out": ..., "aux": ...}."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]]).view(2, 3, 1, 1))

    def forward(self, x):
        out = self.head(x)
        return {"out": out, "aux": out * 0}


def test_segmentation_region_gradient_by_hand():
    x = torch.randn(2, 3, 4, 4)
    mask = torch.zeros(4, 4)
    mask[1:3, 0:2] = 1  # 4 pixels
    e = ss.Gradient(Seg().eval()).explain(x, target=ss.SegmentationTarget(0, mask))
    expected = torch.zeros(2, 3, 4, 4)
    expected[:, :, 1:3, 0:2] = torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1) / 4  # mean over the region
    torch.testing.assert_close(e.attributions, expected)
    torch.testing.assert_close(e.scores, (Seg()(x)["out"][:, 0] * mask).sum((1, 2)) / 4)


def test_segmentation_region_defaults_to_the_predicted_pixels_and_says_when_empty():
    x = torch.zeros(1, 3, 4, 4)
    x[0, 2, :2] = 5.0  # class 1 wins in the top half (5 vs 2.5)
    e = ss.Gradient(Seg().eval()).explain(x, target=ss.SegmentationTarget(1))
    assert e.attributions[0, :, 2:].abs().sum() == 0 and e.attributions[0, :, :2].abs().sum() > 0
    with pytest.raises(TargetError, match="predicts class 0 nowhere"):
        ss.Gradient(Seg().eval()).explain(
            torch.zeros(1, 3, 4, 4) + torch.tensor([0, 0, 1.0]).view(1, 3, 1, 1), target=ss.SegmentationTarget(0)
        )


def test_segmentation_with_torchvision_deeplab_and_gradcam():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=3, aux_loss=False
        ).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[10:30, 20:40] = True
    e = ss.GradCAM(model, layer="classifier.0").explain(x, target=ss.SegmentationTarget(2, mask))
    # the reference: Grad-CAM written out by hand for the mean class-2 logit over the mask
    box = {}
    handle = model.classifier[0].register_forward_hook(lambda m, i, o: box.__setitem__("a", o))
    try:
        score = (model(x)["out"][:, 2] * mask).sum((1, 2)) / mask.sum()
        (g,) = torch.autograd.grad(score.sum(), box["a"])
    finally:
        handle.remove()
    cam = torch.relu((g.mean((2, 3), keepdim=True) * box["a"].detach()).sum(1))
    expected = torch.nn.functional.interpolate(cam[:, None], size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(e.attributions, expected, rtol=1e-4, atol=1e-6)
    assert e.attributions.abs().sum() > 0
    with pytest.raises(ss.SaliscopeError, match="'backbone' outputs a OrderedDict, not a spatial map"):
        ss.GradCAM(model, layer="backbone").explain(x, target=ss.SegmentationTarget(2, mask))


class Detector(nn.Module):
    """Two fixed boxes per image; box i's score is sigmoid(mean of channel i inside it)."""

    boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [4.0, 4.0, 8.0, 8.0]])

    def forward(self, images):
        out = []
        for img in images:
            s = torch.stack([img[0, :4, :4].mean(), img[1, 4:, 4:].mean()]).sigmoid()
            out.append({"boxes": self.boxes, "labels": torch.tensor([1, 2]), "scores": s})
        return out


def test_box_target_explains_the_matching_detection_only():
    x = torch.randn(2, 3, 8, 8)
    e = ss.Gradient(Detector().eval()).explain(x, target=ss.BoxTarget((4.5, 4.0, 8.0, 8.0), label=2))
    s = x[:, 1, 4:, 4:].mean((1, 2)).sigmoid()
    torch.testing.assert_close(e.scores, s)
    expected = torch.zeros_like(x)
    expected[:, 1, 4:, 4:] = (s * (1 - s) / 16).view(2, 1, 1)
    torch.testing.assert_close(e.attributions, expected)
    miss = ss.BoxTarget((0.0, 0.0, 4.0, 4.0), label=2)  # right box, wrong label: no detection, score 0
    with pytest.warns(UserWarning):
        e = ss.Gradient(Detector().eval()).explain(x, target=miss)
        e.normalized()
    assert (e.scores == 0).all()


def test_box_target_on_torchvision_faster_rcnn():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=3, box_score_thresh=0.0
        ).eval()
    x = torch.rand(1, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        det = model(x)[0]
    assert len(det["boxes"])
    box, label = det["boxes"][0], int(det["labels"][0])
    e = ss.Gradient(model).explain(x, target=ss.BoxTarget(box, label=label))
    torch.testing.assert_close(e.scores, det["scores"][:1], rtol=1e-4, atol=1e-5)
    assert e.attributions.abs().sum() > 0


def test_embedding_similarity_gradient_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5, bias=False)).eval()
    x = torch.randn(1, 3, 2, 2)
    ref = torch.randn(5)
    e = ss.Gradient(model).explain(x, target=ss.EmbeddingTarget(ref, metric="dot"))
    torch.testing.assert_close(e.attributions.flatten(), model[1].weight.t() @ ref)
    cos = ss.Gradient(model).explain(x, target=ss.EmbeddingTarget(ref))
    torch.testing.assert_close(cos.scores, torch.cosine_similarity(model(x), ref[None]))


class DictModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = SmallCNN()

    def forward(self, x):
        return {"logits": self.net(x), "features": x.mean((2, 3))}


def test_output_target_picks_the_scores_of_a_dict_or_tuple():
    model = DictModel().eval()
    x = torch.randn(2, 3, 8, 8)
    picked = ss.GradCAM(model).explain(x, target=ss.OutputTarget("logits", ss.ClassTarget(2)))
    plain = ss.GradCAM(model.net).explain(x, target=2)
    torch.testing.assert_close(picked.attributions, plain.attributions)
    predicted = ss.Gradient(model).explain(x, target=ss.OutputTarget("logits"))
    assert predicted.target.batch_size == 2 and predicted.params["output"] == "logits"
    # A plain class target reads the 'logits' entry by itself, and says so.
    plain_target = ss.GradCAM(model).explain(x, target=2)
    torch.testing.assert_close(plain_target.attributions, plain.attributions)
    assert plain_target.params["output"] == "logits" and "output" not in plain.params
    with pytest.raises(ModelOutputError, match=r"no entry 'scores'.*'logits', 'features'"):
        ss.Gradient(model).explain(x, target=ss.OutputTarget("scores", ss.ClassTarget(0)))


def test_per_image_targets_and_several_classes():
    model = SmallCNN().eval()
    x = torch.randn(3, 3, 8, 8)
    e = ss.GradCAM(model).explain(x, target=[0, 3, 1])
    for i, c in enumerate([0, 3, 1]):
        torch.testing.assert_close(
            e.attributions[i : i + 1], ss.GradCAM(model).explain(x[i : i + 1], target=c).attributions
        )


def test_metrics_and_check_read_the_logits_of_a_dict_output_like_a_tensor():
    """Every metric scores the class through the target, so a ModelOutput-like dict measures exactly as the bare
    model does; check() judges it the same."""
    model = DictModel().eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    plain = ss.Gradient(model.net).explain(x, target=1)
    wrapped = ss.Gradient(model).explain(x, target=1)
    for metric in (ss.metrics.deletion, ss.metrics.insertion, ss.metrics.pixel_flipping):
        a, b = metric(model, x, wrapped, 1, steps=4), metric(model.net, x, plain, 1, steps=4)
        torch.testing.assert_close(torch.tensor(a.as_dict()["scores"]), torch.tensor(b.as_dict()["scores"]))
        torch.testing.assert_close(a.value, b.value)
    a = ss.metrics.random_logit(ss.Gradient(model), x, 1)
    b = ss.metrics.random_logit(ss.Gradient(model.net), x, 1)
    torch.testing.assert_close(a.value, b.value)
    checks = ("map", "deletion", "sanity")
    checked = ss.check(wrapped, model, x, explainer=ss.Gradient(model), checks=checks)
    reference = ss.check(plain, model.net, x, explainer=ss.Gradient(model.net), checks=checks)
    assert checked.lines() == reference.lines() and checked.passed == reference.passed
