"""Detectors: known answers on a hand-built detector, D-RISE's similarity by hand, its seeding, chunking and
inference copy, and the image-path layer rule."""

from __future__ import annotations

import math

import pytest
import torch
from detection_models import (
    HI,
    LO,
    PATCH_VALUE,
    SIZE,
    PatchDetector,
    patch_images,
    patch_mask,
    positive_share,
)
from model_snapshot import assert_same, snapshot
from torch import nn

import saliscope as ss
from saliscope.core.errors import InputError, MethodError, TargetError
from saliscope.core.inference_copy import FOLD_FROM_ROWS, PROBE_PASSES, inference_copy
from saliscope.methods.detector_layers import DenseLayerGrid
from saliscope.methods.perturbation.drise import Similarity, detector_classes

PATCH_PIXELS = (HI - LO) ** 2


def clean_score(gain: float = 20.0, mean: float = PATCH_VALUE) -> float:
    return 1 / (1 + math.exp(-gain * (mean - PATCH_VALUE / 2)))


# -- known answers on the hand-built detector ------------------------------------------------------------
def test_gradient_is_exactly_the_patch_derivative():
    x = patch_images(2)
    e = ss.Gradient(PatchDetector()).explain(x, target=ss.DetectionTarget(0))
    s = clean_score()
    expected = torch.zeros_like(x)
    expected[:, 0, LO:HI, LO:HI] = s * (1 - s) * 20.0 / PATCH_PIXELS
    torch.testing.assert_close(e.attributions, expected)
    torch.testing.assert_close(e.scores, torch.full((2,), s))
    assert (positive_share(e.attributions, patch_mask()) == 1).all()


def test_occlusion_drops_only_inside_the_patch():
    x = patch_images(2)
    aligned = ss.Occlusion(PatchDetector(), window=4, stride=4).explain(x, target=ss.DetectionTarget(0))
    # hiding one 4×4 window of the patch lowers its mean by 16 · 0.6 / 576
    drop = clean_score() - clean_score(mean=PATCH_VALUE * (1 - 16 / PATCH_PIXELS))
    expected = torch.zeros(2, 1, SIZE, SIZE)
    expected[:, :, LO:HI, LO:HI] = drop
    torch.testing.assert_close(aligned.attributions, expected, rtol=1e-4, atol=1e-7)
    default = ss.Occlusion(PatchDetector()).explain(x, target=ss.DetectionTarget(0))  # 2-px windows, stride 1
    assert (positive_share(default.attributions, patch_mask()) >= 0.9).all()


def test_drise_puts_nine_tenths_of_its_positive_mass_on_the_patch():
    x = patch_images(2)
    e = ss.DRISE(PatchDetector(), seed=0).explain(x, target=ss.DetectionTarget(0))  # the paper's 16 × 16 grid
    assert e.attributions.shape == (2, 1, SIZE, SIZE)
    assert (positive_share(e.attributions, patch_mask()) >= 0.9).all()
    # every image sees the same masks: two copies of one image get one map
    torch.testing.assert_close(e.attributions[0], e.attributions[1])
    assert e.params["num_classes"] == 2 and e.params["n_masks"] == 4000 and e.params["grid"] == 16
    assert 0 < float(e.extras["mean_similarity"][0]) < 1


def test_the_cam_reading_the_image_path_of_the_patch_detector():
    e = ss.HiResCAM(PatchDetector()).explain(patch_images(2), target=ss.DetectionTarget(0))
    assert e.attributions.shape == (2, 1, SIZE, SIZE)
    assert (positive_share(e.attributions, patch_mask()) > 0.95).all()


# -- D-RISE's similarity ---------------------------------------------------------------------------------
def _det(boxes, labels, scores, **extra):
    out = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.long),
        "scores": torch.tensor(scores, dtype=torch.float32),
    }
    return {**out, **{k: torch.tensor(v, dtype=torch.float32) for k, v in extra.items()}}


def _spread(label, score, k):
    v = torch.full((k,), (1 - score) / (k - 1))
    v[label] = score
    return v


def test_drise_similarity_is_iou_times_cosine_of_class_vectors():
    clean = [_det([[0, 0, 10, 10]], [2], [0.8])]
    reference = ss.DetectionTarget(0).bind(clean, 1)
    similarity = Similarity(reference, classes=4)
    masked = [_det([[0, 0, 10, 5], [0, 0, 10, 10], [20, 20, 30, 30]], [2, 1, 2], [0.6, 0.9, 0.99])]
    cos = torch.nn.functional.cosine_similarity
    ref = _spread(2, 0.8, 4)
    expected = max(
        0.5 * float(cos(ref, _spread(2, 0.6, 4), dim=0)),  # half the box, same label
        1.0 * float(cos(ref, _spread(1, 0.9, 4), dim=0)),  # the whole box, another label
        0.0,  # no overlap
    )
    assert similarity(masked).tolist() == pytest.approx([expected])
    assert similarity([_det([], [], [])]).tolist() == [0.0]
    # class vectors and objectness given by the detector are used as they are
    probs = [[0.1, 0.2, 0.6, 0.1], [0.0, 0.1, 0.9, 0.0]]
    exposed = [_det([[0, 0, 10, 10], [0, 0, 10, 10]], [2, 2], [0.6, 0.9], class_probs=probs, objectness=[0.5, 0.25])]
    got = Similarity(ss.DetectionTarget(0).bind(exposed, 1), classes=None)(exposed)  # the 0.9 one: p[1]
    p = torch.tensor(probs)
    assert got.tolist() == pytest.approx([max(0.5 * float(cos(p[1], p[0], dim=0)), 0.25)])
    # without K: the same label counts 1, another 0
    assert Similarity(reference, classes=None)(masked).tolist() == pytest.approx([0.5])
    # a box named by the user, with its label: a one-hot reference vector
    named = ss.BoxTarget((0, 0, 10, 10), label=2).bind(None, 1)
    one_hot = torch.nn.functional.one_hot(torch.tensor(2), 4).float()
    assert Similarity(named, classes=4)(masked).tolist() == pytest.approx(
        [max(0.5 * float(cos(one_hot, _spread(2, 0.6, 4), dim=0)), float(cos(one_hot, _spread(1, 0.9, 4), dim=0)))]
    )


def test_drise_explains_detections_only():
    with pytest.raises(TargetError, match="D-RISE explains a detection") as info:
        ss.DRISE(PatchDetector(), n_masks=4).explain(patch_images(1), target=1)
    assert "--detection K" in info.value.cli_fix
    with pytest.raises(InputError, match="num_classes must be an integer >= 2"):
        ss.DRISE(PatchDetector(), num_classes=1)
    with pytest.raises(InputError, match="finer than the 32×32 image"):
        ss.DRISE(PatchDetector(), grid=33, n_masks=4).explain(patch_images(1), target=ss.DetectionTarget(0))


def test_drise_is_seeded_batched_and_chunked():
    model, x = PatchDetector(), patch_images(3, seed=1)
    x[1] = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(9))  # a second, different image
    x[1, 0, LO:HI, LO:HI] = 0.5
    together = ss.DRISE(model, n_masks=64, seed=5, chunk_size=10).explain(x, target=ss.DetectionTarget(0))
    # the masks, the clean pass binding the target (3 rows), the inference copy's look at the model (1 row)
    assert together.cost.forward_passes == 3 * 64 + 3 + 1
    assert together.cost.batches == math.ceil(3 * 64 / 10) + 2
    for i in range(3):
        alone = ss.DRISE(model, n_masks=64, seed=5).explain(x[i : i + 1], target=ss.DetectionTarget(0))
        torch.testing.assert_close(together.attributions[i : i + 1], alone.attributions, rtol=1e-5, atol=1e-7)
    drawn = ss.DRISE(model, n_masks=8).explain(x[:1], target=ss.DetectionTarget(0))
    again = ss.DRISE(model, n_masks=8, seed=drawn.params["seed"]).explain(x[:1], target=ss.DetectionTarget(0))
    assert torch.equal(drawn.attributions, again.attributions)


def test_drise_progress_bar_when_asked(capsys):
    ss.DRISE(PatchDetector(), n_masks=12, seed=0, chunk_size=4).explain(patch_images(1), ss.DetectionTarget(0))
    assert capsys.readouterr().err == ""
    ss.DRISE(PatchDetector(), n_masks=12, seed=0, chunk_size=4, progress=True).explain(
        patch_images(1), ss.DetectionTarget(0)
    )
    assert "drise" in capsys.readouterr().err


class NormedDetector(PatchDetector):
    """The patch detector with a conv + batch norm in front (a frozen one when ``frozen``): a fold to make."""

    def __init__(self, frozen: bool = False) -> None:
        super().__init__()
        from torchvision.ops.misc import FrozenBatchNorm2d

        self.stem = nn.Conv2d(3, 3, 1)
        self.norm = FrozenBatchNorm2d(3) if frozen else nn.BatchNorm2d(3)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.stem.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 2)
            self.stem.bias.zero_()
            self.norm.weight.copy_(torch.rand(3, generator=g) + 0.5)
            self.norm.bias.copy_(torch.randn(3, generator=g) * 0.1)
            self.norm.running_mean.copy_(torch.randn(3, generator=g) * 0.1)
            self.norm.running_var.copy_(torch.rand(3, generator=g) + 2.0)

    def forward(self, images):
        return super().forward(self.norm(self.stem(images)))


@pytest.mark.parametrize("frozen", [False, True])
def test_drise_runs_on_the_folded_copy_of_a_detector(frozen):
    """Labels are compared exactly, scores and boxes to rounding; torchvision's FrozenBatchNorm2d folds too."""
    model = NormedDetector(frozen).eval()
    x = patch_images(1)
    copy = inference_copy(model, x)
    assert copy is not None and not any(type(m).__name__.endswith("BatchNorm2d") for m in copy.modules())
    e = ss.DRISE(model, n_masks=FOLD_FROM_ROWS, seed=0).explain(x, ss.DetectionTarget(0))
    assert e.cost.forward_passes == FOLD_FROM_ROWS + PROBE_PASSES + 1  # the masks, the copy's check, the clean pass


class ShiftyLabels(PatchDetector):
    """Labels that depend on a float rounding: a copy whose labels differ is not the same answer."""

    def forward(self, images):
        out = super().forward(images)
        for d in out:
            d["labels"] = d["labels"] + (images.sum() * 1e6 % 2 > 1).long()
        return out


def test_a_copy_with_other_labels_is_refused():
    from saliscope.core.inference_copy import _same_output

    a = [{"labels": torch.tensor([1, 2]), "scores": torch.tensor([0.5, 0.4])}]
    assert _same_output(a, [{"labels": torch.tensor([1, 2]), "scores": torch.tensor([0.5, 0.4 + 1e-7])}])
    assert not _same_output(a, [{"labels": torch.tensor([2, 1]), "scores": torch.tensor([0.5, 0.4])}])


# -- the layer a CAM reads in a detector -------------------------------------------------------------------
def test_dense_grid_resamples_the_part_covering_the_image():
    """A 4×6 grid of which the image covers 3 rows and 4.5 columns: cell centres of a 3×4 (rounded) grid."""
    grid = DenseLayerGrid("layer", "nchw", (4, 6), extent=(0.75, 0.75))
    rows = torch.arange(4, dtype=torch.float64).view(1, 1, 4, 1).expand(1, 1, 4, 6)
    cols = torch.arange(6, dtype=torch.float64).view(1, 1, 1, 6).expand(1, 1, 4, 6)
    got_rows, got_cols = grid.to_maps(rows), grid.to_maps(cols)
    assert got_rows.shape == (1, 1, 3, 4) == got_cols.shape
    # output cell i covers [i, i+1) · 3/3 rows and [j, j+1) · 4.5/4 columns; bilinear values at their centres
    torch.testing.assert_close(got_rows[0, 0, :, 0], torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    expected = (torch.arange(4, dtype=torch.float64) + 0.5) * 4.5 / 4 - 0.5
    torch.testing.assert_close(got_cols[0, 0, 0], expected)
    whole = DenseLayerGrid("layer", "nchw", (4, 6))
    assert whole.to_maps(rows) is rows


def test_detector_classes_read_off_torchvision_heads_and_labels():
    assert detector_classes(PatchDetector()) == 2
    assert detector_classes(nn.Linear(2, 2)) is None


def test_the_model_is_left_as_found_by_every_detector_method():
    model = PatchDetector().train()
    model.head.weight.requires_grad_(False)
    model.features.weight.grad = torch.full_like(model.features.weight, 3.0)
    before = snapshot(model)
    for explainer in (ss.DRISE(model, n_masks=8, seed=0), ss.GradCAM(model), ss.Occlusion(model)):
        explainer.explain(patch_images(1), ss.DetectionTarget(0))
        assert_same(before, snapshot(model))


def test_a_layer_with_the_proposals_batch_is_refused():
    class TwoStage(PatchDetector):
        """A 'region head' whose batch is 3 proposals per image."""

        def __init__(self) -> None:
            super().__init__()
            self.roi = nn.Conv2d(3, 3, 1)

        def forward(self, images):
            out = super().forward(images)
            self.roi(images.repeat_interleave(3, 0))
            return out

    with pytest.raises(MethodError, match=r"layer 'roi' returned 3 rows for 1 image: it runs on region proposals"):
        ss.GradCAM(TwoStage(), layer="roi").explain(patch_images(2), ss.DetectionTarget(0))
