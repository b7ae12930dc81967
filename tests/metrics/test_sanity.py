"""Sanity checks: randomised copies change exactly what they should, a model-blind method is flagged,
and on the default model the finding of Adebayo et al. (2018) is reproduced."""

from __future__ import annotations

import pytest
import torch
from robustness_models import LinearImage, Sobel
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from tiny_models import SmallCNN

import saliscope as ss
from saliscope.core.errors import InputError, MethodError
from saliscope.metrics import model_randomisation, random_logit, randomisation_stages, randomised_copies
from saliscope.metrics.sanity import Stage, reinitialise
from saliscope.metrics.similarity import evidence_maps


def batch(b: int = 2, h: int = 8, w: int = 8, seed: int = 2) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def snapshot(model: torch.nn.Module) -> dict[str, object]:
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "grads": [p.grad for p in model.parameters()],
    }


def assert_unchanged(model: torch.nn.Module, before: dict[str, object]) -> None:
    after = snapshot(model)
    assert after["tensors"].keys() == before["tensors"].keys()
    for k, v in before["tensors"].items():
        assert torch.equal(after["tensors"][k], v), k
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    assert all(g is None for g in after["grads"])


def changed(model: torch.nn.Module, original: dict[str, torch.Tensor]) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(p.detach(), original[n])}


def test_default_stages_follow_the_architecture(default_model):
    names = [s.name for s in randomisation_stages(default_model)]
    assert names == ["classifier", "conv_head+bn2", *(f"blocks.{i}" for i in range(6, -1, -1)), "conv_stem+bn1"]
    stages = randomisation_stages(SmallCNN())
    assert [s.name for s in stages] == ["fc", "conv2", "conv1+bn"]
    assert stages[2].parameters == ("conv1.weight", "conv1.bias", "bn.weight", "bn.bias")
    every = [n for s in randomisation_stages(default_model) for n in s.parameters]
    assert sorted(every) == sorted(n for n, _ in default_model.named_parameters())  # each parameter once


@pytest.mark.parametrize("order", ["cascading", "independent"])
def test_randomised_copies_change_exactly_their_stages_and_never_the_users_model(order):
    model = SmallCNN().train()  # training mode and live requires_grad must survive too
    before = snapshot(model)
    rng = torch.get_rng_state()
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    stages = randomisation_stages(model)
    seen = []
    for i, (stage, twin) in enumerate(randomised_copies(ss.Gradient(model), order=order, seed=5)):
        assert twin.model is not model
        expected = {n for s in (stages[: i + 1] if order == "cascading" else [stages[i]]) for n in s.parameters}
        assert stage == stages[i] and changed(twin.model, original) == expected
        if stage.name == "conv1+bn":  # reset_parameters also resets the batch-norm statistics
            assert torch.equal(twin.model.bn.running_mean, torch.zeros(6))
            assert torch.equal(twin.model.bn.running_var, torch.ones(6))
        seen.append({n: p.detach().clone() for n, p in twin.model.named_parameters()})
    assert len(seen) == 3
    assert_unchanged(model, before)
    assert torch.equal(torch.get_rng_state(), rng)  # reset_parameters ran on a forked, seeded RNG
    # Seeded: again the same weights; stage i draws the same weights in either order.
    again = [
        {n: p.detach().clone() for n, p in t.model.named_parameters()}
        for _, t in randomised_copies(ss.Gradient(model), order=order, seed=5)
    ]
    for a, b in zip(seen, again, strict=True):
        assert all(torch.equal(a[n], b[n]) for n in a)
    other = dict(
        randomised_copies(
            ss.Gradient(model), order="independent" if order == "cascading" else "cascading", seed=5, stages=["fc"]
        )
    )
    assert torch.equal(next(iter(other.values())).model.fc.weight, seen[0]["fc.weight"])


def test_reinitialise_uses_the_modules_own_init_and_a_normal_draw_for_the_rest():
    model = SmallCNN()
    fresh = SmallCNN()
    reinitialise(fresh, Stage("fc", ("fc.weight", "fc.bias")), seed=0)
    # nn.Linear's own init: uniform within ±1/sqrt(fan_in)
    assert float(fresh.fc.weight.detach().abs().max()) <= 6**-0.5 and not torch.equal(fresh.fc.weight, model.fc.weight)
    # One parameter of a module alone: its module's reset would touch the other one, so it gets a normal draw.
    lone = SmallCNN()
    reinitialise(lone, Stage("fc.weight", ("fc.weight",)), seed=0)
    assert torch.equal(lone.fc.bias, model.fc.bias) and not torch.equal(lone.fc.weight, model.fc.weight)
    assert float(lone.fc.weight.detach().std()) == pytest.approx(float(model.fc.weight.detach().std()), rel=0.5)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_model_built_from_the_same_small_seed_still_gets_new_weights(seed):
    torch.manual_seed(seed)  # the user's habit: the stage seeds are offset, so this is not the stream reused
    model = torch.nn.Sequential(torch.nn.Linear(16, 4))
    ((_, twin),) = randomised_copies(ss.Gradient(model), seed=seed)
    a, b = model[0].weight.detach().flatten(), twin.model[0].weight.detach().flatten()
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.5


def test_copies_keep_module_references_consistent():
    model = SmallCNN().eval()
    cam = ss.GradCAM(model, layer=model.conv2)
    smooth = ss.SmoothGrad(ss.Gradient(model), n_samples=2, seed=0)
    for explainer in (cam, smooth):
        (_, twin), *_ = randomised_copies(explainer, stages=["fc"])
        assert twin.model is not model
    (_, twin), *_ = randomised_copies(cam, stages=["fc"])
    assert twin.layer is twin.model.conv2
    (_, twin), *_ = randomised_copies(smooth, stages=["fc"])
    assert twin.inner.model is twin.model
    before = snapshot(model)
    result = model_randomisation(cam, batch(h=12, w=12))  # the copy's hook lands on the copy's conv2
    assert bool((result.spearman_abs[-1] < 0.9).all())
    assert_unchanged(model, before)


def test_a_model_blind_explainer_is_flagged_and_gradient_passes():
    # The edge detector ignores the model: its map stays identical however the weights are destroyed.
    x = batch(b=2, h=32, w=32)
    cnn = SmallCNN().eval()
    blind = model_randomisation(Sobel(cnn), x)
    assert blind.spearman_abs.flatten().tolist() == pytest.approx([1.0] * 6)
    assert blind.ssim.flatten().tolist() == pytest.approx([1.0] * 6)
    assert blind.flat.shape == (3, 2) and not bool(blind.flat.any())
    # A linear model's gradient is its weight row: once randomised, it is unrelated to the original.
    linear = LinearImage(h=32, w=32).eval()
    gradient = model_randomisation(ss.Gradient(linear), x)
    assert gradient.stages == ("fc",)
    assert bool((gradient.spearman_abs.abs() < 0.15).all()) and bool((gradient.spearman_signed.abs() < 0.15).all())
    assert bool((gradient.ssim < 0.2).all())
    # On the small CNN, the gradient changes as soon as the top layer is random.
    cnn_gradient = model_randomisation(ss.Gradient(cnn), x)
    assert bool((cnn_gradient.spearman_signed[-1].abs() < 0.5).all())
    assert bool((cnn_gradient.spearman_abs < blind.spearman_abs - 0.3).all())


class DiesWhenRandom(torch.nn.Module):
    """relu(fc1(x) − 20): the hand-set fc1 clears the threshold; a freshly initialised one never does."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(3 * 8 * 8, 8)
        self.fc2 = torch.nn.Linear(8, 3)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.randn(8, 192, generator=torch.Generator().manual_seed(0)) * 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1)) - 20))


def test_a_randomised_model_with_dead_activations_reports_a_flat_map():
    x = batch(b=2) * 3
    result = model_randomisation(ss.Gradient(DiesWhenRandom()), x, stages=["fc1"])
    assert result.flat.tolist() == [[True, True]]
    assert result.spearman_abs.tolist() == [[0.0, 0.0]]
    assert result.as_dict()["stages"][0]["flat"] == [True, True]


def test_randomisation_numbers_match_a_slow_recomputation():
    model = SmallCNN().eval()
    x = batch(b=2, h=12, w=12)
    explainer = ss.Gradient(model)
    result = model_randomisation(explainer, x, order="independent", seed=1, keep_maps=True)
    clean = explainer.explain(x)
    assert result.maps is not None and result.maps.shape == (3, 2, 3, 12, 12)
    for s, (stage, twin) in enumerate(randomised_copies(explainer, order="independent", seed=1)):
        assert result.stages[s] == stage.name
        randomised = twin.explain(x, clean.target).attributions
        assert torch.equal(result.maps[s], randomised)
        for i in range(2):
            a, b = clean.attributions[i], randomised[i]
            assert float(result.spearman_abs[s, i]) == pytest.approx(
                spearmanr(a.abs().sum(0).flatten(), b.abs().sum(0).flatten()).statistic, abs=1e-9
            )
            assert float(result.spearman_signed[s, i]) == pytest.approx(
                spearmanr(a.sum(0).flatten(), b.sum(0).flatten()).statistic, abs=1e-9
            )
            unit = [(m - m.min()) / (m.max() - m.min()) for m in (a.abs().sum(0).double(), b.abs().sum(0).double())]
            assert float(result.ssim[s, i]) == pytest.approx(
                structural_similarity(unit[0].numpy(), unit[1].numpy(), data_range=1.0), abs=1e-6
            )
    assert result.cost.backward_passes == 2 * 4
    assert [row["stage"] for row in result.as_dict()["stages"]] == ["fc", "conv2", "conv1+bn"]
    assert torch.equal(result.value, result.spearman_abs.mean(0)) and result.higher_is_better is False
    assert not bool(result.flat.any())


def test_random_logit_compares_with_the_seeded_other_class():
    model = LinearImage(h=16, w=16, k=5).eval()
    x = batch(b=3, h=16, w=16)
    result = random_logit(ss.Gradient(model), x, seed=3)
    classes = model(x).argmax(1)
    r = int(torch.randint(4, (1,), generator=torch.Generator().manual_seed(3)))
    assert result.classes.tolist() == classes.tolist()
    assert result.random_classes.tolist() == [r + int(c <= r) for c in classes.tolist()]
    assert bool((result.random_classes != result.classes).all())
    for i in range(3):
        own, other = (
            evidence_maps(model.weight_map(int(c)), "signed")[0, 0]
            for c in (result.classes[i], result.random_classes[i])
        )
        assert float(result.spearman_signed[i]) == pytest.approx(
            spearmanr(own.flatten(), other.flatten()).statistic, abs=1e-6
        )
    alone = [random_logit(ss.Gradient(model), x[i : i + 1], seed=3) for i in range(3)]
    assert [int(a.random_classes[0]) for a in alone] == result.random_classes.tolist()
    assert random_logit(Sobel(model), x).spearman_abs.tolist() == pytest.approx([1.0] * 3)  # blind to the class
    assert result.as_dict()["metric"] == "random-logit"


def test_bad_arguments_are_clear_errors():
    model = SmallCNN().eval()
    x = batch()
    with pytest.raises(InputError, match="no module or parameter 'head'"):
        model_randomisation(ss.Gradient(model), x, stages=["head"])
    with pytest.raises(InputError, match="order"):
        model_randomisation(ss.Gradient(model), x, order="backwards")
    with pytest.raises(InputError, match="no parameters"):
        model_randomisation(ss.Gradient(model), x, stages=["act"])
    with pytest.raises(MethodError, match="explainer"):
        random_logit(model, x)


def test_default_model_reproduces_adebayo_2018(default_model):
    """Randomising the top three stages (classifier, head, last block) changes Gradient and Grad-CAM maps a
    lot while guided backprop's stay nearly untouched. Full cascade figures: the README.

    Measured (chelsea, seed 0): Gradient |ρ| 0.37 abs / 0.04 signed, guided backprop 0.99 / 1.00, Grad-CAM
    0.58. Grad-CAM's value swings with the random draw (−0.6 … +0.7 over 5 seeds × 4 photos, mean 0.05:
    a random classifier row weights the layer's channels into a random sign of the same "objectness"
    map), so it is only required to stay well below guided backprop.
    """
    from skimage.data import chelsea

    x = default_model.preprocess(ss.load_image(chelsea()))
    before = snapshot(default_model)
    # The state at the end of that cascade, reached in one stage (two explanations per method, not four).
    top = ["+".join(s.name for s in randomisation_stages(default_model)[:3])]
    final = {}
    for method in (ss.Gradient, ss.GradCAM, ss.GuidedBackprop):
        result = model_randomisation(method(default_model), x, stages=top)
        final[method.name] = (float(result.spearman_abs[0, 0]), float(result.spearman_signed[0, 0]))
    assert final["gradient"][0] < 0.6 and abs(final["gradient"][1]) < 0.3
    assert final["gradcam"][0] < 0.8
    assert min(final["guided-backprop"]) > 0.9
    assert_unchanged(default_model, before)
