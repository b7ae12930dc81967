"""Detection targets: the K-th detection bound once on the clean output, a named box, and their errors."""

from __future__ import annotations

import pytest
import torch
from detection_models import PatchDetector, patch_images

import saliscope as ss
from saliscope.core.detection_targets import BoundDetections, box_iou, check_box, ranked
from saliscope.core.errors import ModelOutputError, TargetError


def detections(*images):
    """A detector output: one dict per image from (box, label, score) triples."""
    out = []
    for triples in images:
        boxes = torch.tensor([list(b) for b, _, _ in triples], dtype=torch.float32).view(-1, 4)
        labels = torch.tensor([c for _, c, _ in triples], dtype=torch.long)
        scores = torch.tensor([s for _, _, s in triples], dtype=torch.float32)
        out.append({"boxes": boxes, "labels": labels, "scores": scores})
    return out


CLEAN = detections(
    [((0, 0, 10, 10), 1, 0.5), ((20, 20, 40, 40), 2, 0.9), ((5, 5, 15, 15), 1, 0.7)],
    [((1, 1, 9, 9), 3, 0.8)],
)


def test_detection_index_counts_by_decreasing_score_and_is_bound_once():
    bound = ss.DetectionTarget(1).bind([CLEAN[0]], 1)
    assert isinstance(bound, BoundDetections)
    # by score: 0.9 (label 2), 0.7 (label 1, the third box), 0.5
    assert bound.boxes.tolist() == [[5.0, 5.0, 15.0, 15.0]] and bound.labels.tolist() == [1]
    assert bound.scores.tolist() == pytest.approx([0.7])
    per_image = ss.DetectionTarget((0, 0)).bind(CLEAN, 2)
    assert per_image.labels.tolist() == [2, 3]
    # a later output is scored by the best detection of the same label overlapping the bound box
    moved = detections([((5, 6, 15, 15), 1, 0.2), ((6, 5, 15, 16), 1, 0.4), ((5, 5, 15, 15), 2, 0.99)])
    assert bound(moved).tolist() == pytest.approx([0.4])
    gone = detections([((30, 30, 40, 40), 1, 0.9)])
    assert bound(gone).tolist() == [0.0]
    assert ranked(CLEAN[0]).tolist() == [1, 2, 0]


def test_take_follows_rows_of_an_expanded_batch():
    bound = ss.DetectionTarget(0).bind(CLEAN, 2)
    rows = torch.tensor([1, 1, 0])
    taken = bound.take(rows)
    assert taken.labels.tolist() == [3, 3, 2] and taken.batch_size == 3
    assert torch.equal(taken.boxes, bound.boxes[rows]) and torch.equal(taken.scores, bound.scores[rows])


def test_detection_beyond_the_detections_says_how_many_there_are():
    with pytest.raises(TargetError, match=r"detection 3 asked for, but the detector found 3 \(0..2\)") as info:
        ss.DetectionTarget(3).bind([CLEAN[0]], 1)
    assert info.value.cli_fix == "use --detection 0..2"
    with pytest.raises(TargetError, match=r"found nothing in image 1.*box_score_thresh"):
        ss.DetectionTarget(0).bind([CLEAN[0], detections([])[0]], 2)
    with pytest.raises(TargetError, match="counts from 0"):
        ss.DetectionTarget(-1)
    with pytest.raises(TargetError, match="must be an int"):
        ss.DetectionTarget(True)  # type: ignore[arg-type]
    with pytest.raises(TargetError, match="iou_threshold must be in"):
        ss.DetectionTarget(0, iou_threshold=0.0)


def test_box_target_without_label_takes_the_best_overlapping_detection():
    bound = ss.BoxTarget((4, 4, 14, 16)).bind([CLEAN[0]], 1)
    assert bound.labels.tolist() == [1] and bound.scores.tolist() == pytest.approx([0.7])
    with pytest.raises(TargetError, match=r"no detection of image 0 overlaps the box.*best IoU is 0\.\d\d") as info:
        ss.BoxTarget((50, 50, 60, 60)).bind([CLEAN[0]], 1)
    assert "--label" in info.value.cli_fix
    assert not ss.BoxTarget((0, 0, 1, 1), label=1).needs_output and ss.BoxTarget((0, 0, 1, 1)).needs_output


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((1.0, 2.0, 3.0), "a box has 4 numbers"),
        ((5.0, 0.0, 5.0, 10.0), r"is empty: it needs x1 > x0 and y1 > y0"),
        ((0.0, 9.0, 5.0, 3.0), r"is empty"),
        ((0.0, float("nan"), 5.0, 3.0), "not finite"),
        (torch.zeros(3, 4), "3 boxes given for a batch of 2"),
    ],
)
def test_bad_boxes_are_clear_errors(box, message):
    with pytest.raises(TargetError, match=message):
        check_box(box, 2)


def test_box_iou_by_hand():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 5.0, 15.0, 15.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 10.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[25 / 175, 0.0, 1.0]]))
    # a box clipped to zero width matches itself moved by a rounding error: it counts as one pixel wide
    line = torch.tensor([[28.0, 28.0, 28.0, 30.0]])
    torch.testing.assert_close(
        box_iou(line, line + torch.tensor([0.0, 0.0, 0.0, 1e-4])), torch.tensor([[1.0]]), atol=1e-4, rtol=0
    )
    torch.testing.assert_close(box_iou(line, torch.tensor([[28.0, 29.0, 28.0, 31.0]])), torch.tensor([[1 / 3]]))


def test_a_class_target_on_a_detector_names_the_detection_targets():
    with pytest.raises(ModelOutputError, match=r"is a detector.*DetectionTarget") as info:
        ss.Gradient(PatchDetector()).explain(patch_images(1))  # the predicted class
    assert "--detection K" in info.value.cli_fix
    with pytest.raises(ModelOutputError, match="needs a detector's output"):
        ss.DetectionTarget(0).bind(torch.zeros(1, 3), 1)
    with pytest.raises(ModelOutputError, match="no 'scores' entry"):
        ss.DetectionTarget(0).bind([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}], 1)
