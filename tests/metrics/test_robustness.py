"""Sensitivity and consistency on models whose maps are known in closed form."""

from __future__ import annotations

import pytest
import torch
from robustness_models import Energy, LinearImage
from scipy.stats import spearmanr

import saliscope as ss
from saliscope import metrics
from saliscope.core.errors import InputError, MethodError
from saliscope.core.targets import BoundClasses
from saliscope.core.views import FlatMapWarning
from saliscope.metrics import avg_sensitivity, consistency, max_sensitivity
from saliscope.metrics.similarity import evidence_maps, top_k_overlap


def batch(b: int = 3, c: int = 3, h: int = 8, w: int = 8, seed: int = 2) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_sensitivity_of_a_linear_models_gradient_is_zero():
    model = LinearImage().eval()
    x = batch()
    for metric in (max_sensitivity, avg_sensitivity):
        result = metric(ss.Gradient(model), x, n_samples=6)
        assert result.value.tolist() == [0.0, 0.0, 0.0]
        assert result.distances.shape == (3, 6) and bool((result.distances == 0).all())


def test_sensitivity_of_gradient_x_input_matches_the_closed_form():
    # Φ(x) = w ⊙ x, so Φ(x+δ) − Φ(x) = w ⊙ δ with δ the metric's own seeded draws (uniform in the L∞ ball).
    model = LinearImage().eval()
    x = batch()
    n, radius = 5, 0.05
    result = max_sensitivity(ss.GradientXInput(model), x, n_samples=n, radius=radius, seed=7)
    unit = torch.rand((n, 3, 8, 8), generator=torch.Generator().manual_seed(7)) * 2 - 1
    classes = model(x).argmax(1)
    for i in range(3):
        w = model.weight_map(int(classes[i]))[0].double()
        span = float(x[i].max() - x[i].min())
        expected = [float((w * radius * span * unit[j]).norm() / (w * x[i]).norm()) for j in range(n)]
        assert result.distances[i].tolist() == pytest.approx(expected, rel=1e-4)
    assert result.value.tolist() == pytest.approx(result.distances.amax(1).tolist())
    assert bool((result.value > 0).all())
    average = avg_sensitivity(ss.GradientXInput(model), x, n_samples=n, radius=radius, seed=7)
    assert average.value.tolist() == pytest.approx(result.distances.mean(1).tolist())
    linf = max_sensitivity(
        ss.GradientXInput(model), x, n_samples=n, radius=radius, seed=7, norm="linf", normalise=False
    )
    w0 = model.weight_map(int(classes[0]))[0].double()
    span0 = float(x[0].max() - x[0].min())
    expected0 = max(float((w0 * radius * span0 * unit[j]).abs().max()) for j in range(n))
    assert float(linf.value[0]) == pytest.approx(expected0, rel=1e-4)


class Recording(ss.Gradient):
    """Gradient that records what each explain call was asked."""

    def __init__(self, model):
        super().__init__(model)
        self.calls: list[tuple[int, object]] = []

    def explain(self, x, target=None):
        self.calls.append((int(x.shape[0]), target))
        return super().explain(x, target)


def test_perturbed_copies_run_in_one_call_and_explain_the_clean_class():
    # Two classes tie on the clean input up to a hair, so noise would flip the predicted class.
    model = LinearImage(k=2).eval()
    with torch.no_grad():
        model.fc.weight[1] = model.fc.weight[0] + 1e-4
        model.fc.bias.zero_()
    x = batch(b=2)
    clean_classes = model(x).argmax(1)
    explainer = Recording(model)
    result = max_sensitivity(explainer, x, n_samples=4, radius=0.2)
    assert [rows for rows, _ in explainer.calls] == [2, 8]  # the clean batch, then all 4 × 2 copies at once
    bound = explainer.calls[1][1]
    assert isinstance(bound, BoundClasses) and bound.classes.tolist() == clean_classes.repeat(4).tolist()
    assert result.cost.backward_passes == 2 + 8
    assert result.as_dict()["metric"] == "max-sensitivity" and len(result.as_dict()["sensitivity"]) == 2


def test_sensitivity_batched_equals_alone_seeded_and_leaves_input_alone(cnn):
    x = batch()
    before = x.clone()
    together = avg_sensitivity(ss.GradientXInput(cnn), x, n_samples=4, seed=3)
    alone = [avg_sensitivity(ss.GradientXInput(cnn), x[i : i + 1], n_samples=4, seed=3).value for i in range(3)]
    assert together.value.tolist() == pytest.approx(torch.cat(alone).tolist(), rel=1e-5)
    assert torch.equal(x, before)
    again = avg_sensitivity(ss.GradientXInput(cnn), x, n_samples=4, seed=3)
    assert torch.equal(again.value, together.value)
    other = avg_sensitivity(ss.GradientXInput(cnn), x, n_samples=4, seed=4)
    assert not torch.equal(other.value, together.value)


def test_a_zero_clean_map_warns_and_stays_finite_where_it_does_not_move():
    model = LinearImage().eval()
    with torch.no_grad():
        model.fc.weight.zero_()
    with pytest.warns(FlatMapWarning, match="normalise=False"):
        result = max_sensitivity(ss.Gradient(model), batch(), n_samples=2)
    assert result.value.tolist() == [0.0, 0.0, 0.0]
    assert result.higher_is_better is False


def test_bigger_radius_moves_the_map_more(cnn):
    x = batch()
    small = avg_sensitivity(ss.Gradient(cnn), x, radius=0.01, n_samples=8)
    big = avg_sensitivity(ss.Gradient(cnn), x, radius=0.3, n_samples=8)
    assert bool((big.value > small.value).all())


def test_consistency_of_an_equivariant_map_is_perfect():
    # The gradient of sum(x²) is 2x: it shifts and flips with the image, so mapped back it is the same map.
    x = batch(b=2, h=10, w=12)
    result = consistency(ss.Gradient(Energy()), x, transforms=("shift1", "shift2", "hflip"))
    assert result.transforms == ("shift1", "shift2", "hflip")
    assert result.spearman.flatten().tolist() == pytest.approx([1.0] * 6)
    assert result.iou.flatten().tolist() == pytest.approx([1.0] * 6)
    noisy = consistency(ss.Gradient(Energy()), x, transforms=("noise",), noise=0.01)
    assert bool((noisy.spearman > 0.95).all()) and bool((noisy.spearman < 1).all())


def test_consistency_of_a_fixed_map_is_its_agreement_with_itself_moved():
    # A linear model's gradient is W[class] whatever the input: noise changes nothing; a flip or a shift
    # leaves the map in place, so mapping it back compares W with W flipped / shifted.
    model = LinearImage(h=10, w=12).eval()
    x = batch(b=2, h=10, w=12)
    result = consistency(ss.Gradient(model), x)
    assert result.transforms == ("noise", "shift1", "shift2", "hflip")
    classes = model(x).argmax(1)
    for i in range(2):
        m = evidence_maps(model.weight_map(int(classes[i])), "absolute")[0, 0]
        pairs = {
            "noise": (m, m),
            "shift1": (m[:-1, :-1], m[1:, 1:]),
            "shift2": (m[:-2, :-2], m[2:, 2:]),
            "hflip": (m, m.flip(-1)),
        }
        for t, name in enumerate(result.transforms):
            a, b = pairs[name]
            assert float(result.spearman[t, i]) == pytest.approx(
                spearmanr(a.flatten(), b.flatten()).statistic, abs=1e-6
            )
            assert float(result.iou[t, i]) == pytest.approx(float(top_k_overlap(a[None], b[None], k=10)[0]))
    assert result.spearman[0].tolist() == pytest.approx([1.0, 1.0])
    assert bool((result.spearman[3] < 0.5).all())
    assert result.cost.backward_passes == 2 * (1 + 4)
    assert set(result.as_dict()["transforms"]) == {"noise", "shift1", "shift2", "hflip"}


def test_consistency_batched_equals_alone(cnn):
    x = batch()
    together = consistency(ss.Gradient(cnn), x, evidence="signed", top_k=20)
    for i in range(3):
        alone = consistency(ss.Gradient(cnn), x[i : i + 1], evidence="signed", top_k=20)
        assert alone.spearman[:, 0].tolist() == pytest.approx(together.spearman[:, i].tolist(), abs=1e-6)
        assert alone.iou[:, 0].tolist() == pytest.approx(together.iou[:, i].tolist())


def test_bad_arguments_are_clear_errors(cnn):
    x = batch()
    with pytest.raises(MethodError, match="explainer"):
        max_sensitivity(cnn, x)
    with pytest.raises(InputError, match="radius"):
        max_sensitivity(ss.Gradient(cnn), x, radius=0)
    with pytest.raises(InputError, match="n_samples"):
        avg_sensitivity(ss.Gradient(cnn), x, n_samples=0)
    with pytest.raises(InputError, match="norm"):
        avg_sensitivity(ss.Gradient(cnn), x, norm="l1")
    with pytest.raises(InputError, match="transforms"):
        consistency(ss.Gradient(cnn), x, transforms=("rotate",))
    with pytest.raises(InputError, match="top_k"):
        consistency(ss.Gradient(cnn), x, top_k=0.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g, x: metrics.max_sensitivity(g, x, n_samples=2.5), "n_samples must be a whole number"),
        (lambda g, x: metrics.avg_sensitivity(g, x, radius="a"), "radius must be a number > 0"),
        (lambda g, x: metrics.consistency(g, x, noise="a"), "noise must be a number >= 0"),
        (lambda g, x: metrics.effective_resolution(g.explain(x), energy_share=2), "energy_share must be a number > 0"),
    ],
)
def test_wrong_argument_types_are_one_clear_error(call, match) -> None:
    model = LinearImage(h=8, w=8).eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match=match):
        call(ss.Gradient(model), x)


def test_a_clean_explanation_at_hand_is_reused_not_made_again() -> None:
    from saliscope.metrics import model_randomisation, randomisation_stages

    model = LinearImage(h=8, w=8).eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    g = ss.Gradient(model)
    e = g.explain(x, 0)
    fresh, reused = consistency(g, x, e.target), consistency(g, x, e.target, clean=e)
    torch.testing.assert_close(reused.spearman, fresh.spearman)
    assert reused.cost.backward_passes == fresh.cost.backward_passes - e.cost.backward_passes
    stages = randomisation_stages(model)[:1]
    fresh, reused = (
        model_randomisation(g, x, e.target, stages=stages),
        model_randomisation(g, x, e.target, stages=stages, clean=e),
    )
    torch.testing.assert_close(reused.spearman_abs, fresh.spearman_abs)
    assert reused.cost.backward_passes == fresh.cost.backward_passes - e.cost.backward_passes
    with pytest.raises(InputError, match="clean= must be the explainer's Explanation of this very batch"):
        consistency(g, x, e.target, clean=e[:1])
