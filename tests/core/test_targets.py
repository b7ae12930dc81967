import pytest
import torch

from saliscope.core.errors import ModelOutputError, NonFiniteError, TargetError
from saliscope.core.targets import BoundClasses, ClassTarget, PredictedClass, as_target, label_index, top_k_targets

LABELS = ("tench, Tinca tinca", "goldfish", "tabby, tabby cat", "Egyptian cat")
LOGITS = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.5, -1.0, 4.0, 2.0]])


def test_public_edge_conversions():
    assert as_target(2) == ClassTarget(2)
    assert as_target("2") == ClassTarget(2)
    assert as_target(None) == PredictedClass()
    assert as_target("predicted") == PredictedClass()
    assert as_target("tabby cat", labels=LABELS) == ClassTarget(2)
    assert as_target("Egyptian cat", labels=LABELS) == ClassTarget(3)
    assert as_target([1, 2]) == ClassTarget((1, 2))
    assert as_target(torch.tensor([0, 3])) == ClassTarget((0, 3))
    t = PredictedClass(rank=1)
    assert as_target(t) is t


def test_unknown_label_suggests_close_names():
    with pytest.raises(TargetError, match="did you mean 'goldfish'"):
        label_index("goldfsh", LABELS)
    with pytest.raises(TargetError, match="carries no labels"):
        as_target("goldfish")
    with pytest.raises(TargetError):
        as_target(True)


def test_scores_in_each_space():
    bound = ClassTarget(2).bind(None, 2)
    torch.testing.assert_close(bound(LOGITS), torch.tensor([2.0, 4.0]))
    p = ClassTarget(2, space="probability").bind(None, 2)(LOGITS)
    torch.testing.assert_close(p, torch.softmax(LOGITS, 1)[:, 2])
    lp = ClassTarget(2, space="log-probability").bind(None, 2)(LOGITS)
    torch.testing.assert_close(lp, torch.log_softmax(LOGITS, 1)[:, 2])


def test_predicted_and_ranked_classes_are_frozen_at_bind_time():
    bound = PredictedClass().bind(LOGITS, 2)
    assert bound.classes.tolist() == [1, 2]
    assert PredictedClass(rank=1).bind(LOGITS, 2).classes.tolist() == [2, 3]
    # a different output later is still scored for the classes chosen on the clean one
    torch.testing.assert_close(bound(torch.zeros(2, 4) + torch.arange(4.0)), torch.tensor([1.0, 2.0]))
    assert [t.rank for t in top_k_targets(3)] == [0, 1, 2]


def test_take_expands_for_perturbed_copies():
    bound = ClassTarget((1, 3)).bind(None, 2)
    assert bound.take(torch.tensor([0, 0, 1, 1, 1])).classes.tolist() == [1, 1, 3, 3, 3]


def test_errors_name_the_problem_and_the_fix():
    with pytest.raises(TargetError, match=r"class index 9 is out of range: the model has 4 classes \(0..3\)"):
        ClassTarget(9).bind(None, 2)(LOGITS)
    with pytest.raises(TargetError, match="3 class indices given for a batch of 2"):
        ClassTarget((1, 2, 3)).bind(None, 2)
    with pytest.raises(ModelOutputError, match=r"returned a tuple with several \(batch, num_classes\) tensors"):
        ClassTarget(1).bind(None, 2)((LOGITS, LOGITS))
    with pytest.raises(ModelOutputError, match=r"shape \(2, 4, 1\)"):
        ClassTarget(1).bind(None, 2)(LOGITS.unsqueeze(-1))
    with pytest.raises(NonFiniteError):
        BoundClasses(torch.tensor([0, 0]))(torch.full((2, 4), float("inf")))
    with pytest.raises(TargetError, match="space"):
        ClassTarget(1, space="odds")
    with pytest.raises(TargetError, match="rank 4"):
        PredictedClass(rank=4).bind(LOGITS, 2)
