"""Faithfulness metrics: curves with known optima, a slow re-implementation, counterfactual removal."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import fields

import pytest
import torch
from faithfulness_models import BLOCK, LEFT, SIDE, TOP, BlockReader, Counting, awkward, block_image, block_mask
from model_snapshot import assert_same, snapshot
from tiny_models import Linear, SmallCNN

import saliscope as ss
from saliscope import metrics
from saliscope.core.errors import InputError, MethodError, NonFiniteError
from saliscope.core.inference_copy import PROBE_PASSES
from saliscope.core.views import FlatMapWarning
from saliscope.methods.baselines import Blur
from saliscope.metrics.faithfulness import removal_rank, step_counts

N_PIXELS = SIDE * SIDE
N_BLOCK = BLOCK * BLOCK


def trapezoid(values: torch.Tensor, fractions: torch.Tensor) -> float:
    return float(torch.trapezoid(values.double(), fractions.double()))


def run(metric, map_, *, batch=1, **kw):
    kw = {"replacement": "constant", "space": "logit", "steps": 100, **kw}
    return metric(BlockReader(), block_image(batch), map_, target=0, **kw)


# -- the block-reading model: known optima --------------------------------------------------------------


def test_step_counts_and_ranking_ties():
    assert step_counts(1024, 100)[:4].tolist() == [0, 10, 20, 31]  # round(s * 10.24) half up
    assert step_counts(10, 100).tolist() == list(range(11))  # capped: one unit per step
    rank = removal_rank(torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0]]))
    assert rank.tolist() == [[3, 0, 1, 4, 2]]  # descending; ties in index order
    assert removal_rank(torch.tensor([[1.0, 3.0, 3.0, 0.0]]), descending=False).tolist() == [[1, 2, 3, 0]]


def test_perfect_map_reaches_the_best_deletion_auc_possible():
    curve = run(metrics.deletion, block_mask())
    counts = step_counts(N_PIXELS, 100).double()
    # After hiding c pixels at least max(0, 64 - c) block pixels (each 1) survive, so no order can score
    # below (64 - c) / 64 at any step: this pointwise lower bound is the best curve, hence the best AUC.
    best = (N_BLOCK - counts).clamp(min=0) / N_BLOCK
    torch.testing.assert_close(curve.scores[0].double(), best, atol=1e-6, rtol=0)
    assert curve.auc[0] == pytest.approx(trapezoid(best, counts / N_PIXELS), abs=1e-6)
    assert curve.fractions[0] == 0 and curve.fractions[-1] == 1 and curve.scores.shape == (1, 101)
    assert curve.clean_scores[0] == pytest.approx(1.0) and not curve.higher_is_better
    # The inverted map hides the block last: the pointwise upper bound, the worst AUC.
    worst_curve = run(metrics.deletion, -block_mask())
    worst = (N_PIXELS - counts).clamp(max=N_BLOCK) / N_BLOCK
    torch.testing.assert_close(worst_curve.scores[0].double(), worst, atol=1e-6, rtol=0)


def test_random_map_scores_near_chance():
    # A uniformly random order hides each block pixel with probability c / N after c pixels, so the
    # expected score is 1 - c / N and the expected AUC is the area under a straight line: 1/2.
    maps = torch.rand(8, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(5))
    curve = run(metrics.deletion, maps, batch=8)
    assert float(curve.auc.mean()) == pytest.approx(0.5, abs=0.05)  # std of the mean ~0.013
    best = run(metrics.deletion, block_mask()).auc[0]
    assert bool((curve.auc > best).all())
    inserted = run(metrics.insertion, maps, batch=8)
    assert float(inserted.auc.mean()) == pytest.approx(0.5, abs=0.05)


def test_insertion_best_and_worst_are_known():
    counts = step_counts(N_PIXELS, 100).double()
    best = run(metrics.insertion, block_mask())
    torch.testing.assert_close(best.scores[0].double(), counts.clamp(max=N_BLOCK) / N_BLOCK, atol=1e-6, rtol=0)
    assert best.higher_is_better and best.scores[0, 0] == 0 and best.scores[0, -1] == pytest.approx(1.0)
    worst = run(metrics.insertion, -block_mask())
    torch.testing.assert_close(
        worst.scores[0].double(), (counts - (N_PIXELS - N_BLOCK)).clamp(min=0) / N_BLOCK, atol=1e-6, rtol=0
    )
    assert best.auc[0] > 0.9 > 0.1 > worst.auc[0]
    with pytest.raises(InputError, match="normalised AUC"):  # logit scores: the ratio is refused
        _ = best.normalized_auc
    assert best.as_dict()["normalized_auc"] is None


def test_pixel_flipping_morf_and_lerf_over_patches():
    # 8×8 patches: the block is exactly patch (1, 2) of the 4×4 grid of 16 patches.
    morf = run(metrics.pixel_flipping, block_mask(), patch_size=8)
    assert morf.params["steps"] == 16 and morf.fractions.shape == (17,)
    assert morf.scores[0].tolist() == pytest.approx([1.0] + [0.0] * 16)
    lerf = run(metrics.pixel_flipping, block_mask(), order="lerf", patch_size=8)
    assert lerf.scores[0].tolist() == pytest.approx([1.0] * 16 + [0.0])
    assert lerf.higher_is_better and not morf.higher_is_better
    assert morf.aopc[0] == pytest.approx(16 / 17)  # mean over steps of (clean - score)
    # 4×4 patches: the block is 4 patches of sum 16, hidden one per step (patch raster order).
    grid = run(metrics.pixel_flipping, block_mask(), patch_size=4, steps=64)
    assert grid.scores[0, :5].tolist() == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


# -- a slow re-implementation -----------------------------------------------------------------------------


def slow_deletion(model, x, sal, fill, steps, insert=False):
    """One image at a time, one step at a time, sorting in plain Python."""
    b, c, h, w = x.shape
    n = h * w
    curves = []
    for i in range(b):
        with torch.no_grad():
            cls = int(model(x[i : i + 1]).argmax())
        values = sal[i].flatten().tolist()
        order = sorted(range(n), key=lambda p: (-values[p], p))
        row = []
        for s in range(steps + 1):
            hidden = order[: math.floor(s * n / steps + 0.5)]
            start = fill[i] if insert else x[i]
            other = x[i] if insert else fill[i]
            img = start.clone().view(c, n)
            img[:, hidden] = other.reshape(c, n)[:, hidden]
            with torch.no_grad():
                row.append(float(torch.softmax(model(img.view(1, c, h, w)), dim=1)[0, cls]))
        curves.append(row)
    return torch.tensor(curves)


@pytest.mark.parametrize("replacement", ["mean", "constant", "blur"])
@pytest.mark.parametrize("insert", [False, True])
def test_deletion_equals_a_slow_loop_on_a_linear_model(replacement, insert):
    model = Linear().eval()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    sal = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    sal[0, 0, :2] = 0.5  # ties, broken in raster order by both
    fill = {
        "mean": x.mean(dim=(2, 3), keepdim=True).expand_as(x),
        "constant": torch.full_like(x, 0.25),
        "blur": Blur(sigma=2.0)(x, model),
    }[replacement]
    metric = metrics.insertion if insert else metrics.deletion
    curve = metric(model, x, sal, steps=10, replacement=replacement, value=0.25, blur_sigma=2.0, chunk_size=7)
    torch.testing.assert_close(curve.scores, slow_deletion(model, x, sal, fill, 10, insert), atol=1e-6, rtol=1e-5)
    fractions = torch.tensor([math.floor(s * 6.4 + 0.5) for s in range(11)], dtype=torch.float64) / 64
    torch.testing.assert_close(curve.fractions.double(), fractions)
    expected_auc = torch.trapezoid(curve.scores.double(), fractions, dim=1)
    torch.testing.assert_close(curve.auc.double(), expected_auc, atol=1e-6, rtol=0)


# -- cost: batched forward passes ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", [metrics.deletion, metrics.insertion])
def test_a_100_step_curve_is_batched_not_100_calls(metric):
    model = Counting(SmallCNN().eval())
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    sal = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    curve = metric(model, x, sal, steps=100, chunk_size=64)
    rows = 2 * 100  # the clean step is scored once, when the target is bound
    probe = PROBE_PASSES  # one-row passes that fold the batch norm into a private copy
    assert model.calls == 1 + probe + math.ceil(rows / 64) == 7
    assert curve.cost.batches == 7 and curve.cost.forward_passes == 2 + probe + rows
    assert curve.cost.backward_passes == 0 and curve.cost.seconds > 0


def test_every_model_pass_is_counted():
    model, x = SmallCNN().eval(), torch.randn(2, 3, 8, 8)
    sal = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    probe = PROBE_PASSES  # 16 rows per image make the folded copy: its check passes are counted too
    assert metrics.pixel_flipping(model, x, sal, patch_size=2).cost.forward_passes == 2 + probe + 2 * 16
    assert metrics.faithfulness_correlation(model, x, sal, n_subsets=10).cost.forward_passes == 2 + 2 * 10
    assert metrics.counterfactual_removal(model, x, sal, n_random=5).cost.forward_passes == 2 + 2 + 2 * 5


# -- invariants: batched = alone, seeded, model left as found -------------------------------------------------

CASES = {
    "deletion": lambda m, x, s, **kw: metrics.deletion(m, x, s, steps=12, replacement="noise", **kw),
    "insertion": lambda m, x, s, **kw: metrics.insertion(m, x, s, steps=12, replacement="blur", blur_sigma=2.0, **kw),
    "pixel-flipping": lambda m, x, s, **kw: metrics.pixel_flipping(m, x, s, patch_size=2, replacement="noise", **kw),
    "correlation": lambda m, x, s, **kw: metrics.faithfulness_correlation(m, x, s, n_subsets=12, **kw),
    "counterfactual": lambda m, x, s, **kw: metrics.counterfactual_removal(m, x, s, k=20, n_random=6, **kw),
    "road": lambda m, x, s, **kw: metrics.road(m, x, s, percentages=(20, 60), **kw),
}


def main_values(result):
    return {k: v for k, v in result.as_dict().items() if k not in ("cost", "params")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_equals_alone_and_seeds_repeat(name):
    model = SmallCNN().eval()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    sal = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    together = CASES[name](model, x, sal, seed=3)
    per_sample = [
        f.name
        for f in fields(together)
        if isinstance(getattr(together, f.name), torch.Tensor) and getattr(together, f.name).shape[0] == 3
    ]
    assert "clean_scores" in per_sample and len(per_sample) >= 4
    for i in range(3):
        alone = CASES[name](model, x[i : i + 1], sal[i : i + 1], seed=3)
        for key in per_sample:
            torch.testing.assert_close(
                getattr(alone, key), getattr(together, key)[i : i + 1], atol=1e-5, rtol=1e-4, equal_nan=True
            )
    assert main_values(CASES[name](model, x, sal, seed=3)) == main_values(together)
    json.dumps(together.as_dict())  # JSON-friendly


def test_noise_replacement_depends_on_the_seed_only():
    model, x = SmallCNN().eval(), torch.randn(2, 3, 8, 8)
    sal = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    a = metrics.deletion(model, x, sal, steps=8, replacement="noise", seed=1)
    b = metrics.deletion(model, x, sal, steps=8, replacement="noise", seed=2)
    assert not torch.equal(a.scores, b.scores)
    assert torch.equal(a.scores, metrics.deletion(model, x, sal, steps=8, replacement="noise", seed=1).scores)


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_and_input_left_exactly_as_found(name):
    model = awkward(SmallCNN())
    before = snapshot(model)
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    x_copy = x.clone()
    sal = torch.randn(2, 1, 8, 8)
    CASES[name](model, x, sal)
    assert_same(before, snapshot(model))
    assert torch.equal(x, x_copy) and not x.requires_grad


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_left_as_found_when_it_raises_half_way(name):
    net = awkward(SmallCNN())
    model = Counting(net, fail_on=3)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        CASES[name](model, torch.randn(2, 3, 8, 8), torch.randn(2, 1, 8, 8), chunk_size=1)
    assert model.calls == 3
    assert_same(before, snapshot(model))


# -- scores: probability by default, logits on request, the explanation's target ----------------------------


def test_scores_follow_the_explained_class_in_the_space_asked_for():
    model = Linear().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    e = ss.Gradient(model).explain(x, target=[2, 3])  # bound classes, scored as logits
    with torch.no_grad():
        logits = model(x)
    rows = torch.arange(2)
    prob = metrics.deletion(model, x, e, steps=4)
    torch.testing.assert_close(prob.clean_scores, torch.softmax(logits, 1)[rows, [2, 3]])
    assert prob.space == "probability" and prob.params["space"] == "probability"
    logit = metrics.deletion(model, x, e, steps=4, space="logit")
    torch.testing.assert_close(logit.clean_scores, logits[rows, [2, 3]])
    other = metrics.deletion(model, x, e, target=1, steps=4, space="logit")  # a target given wins
    torch.testing.assert_close(other.clean_scores, logits[:, 1])
    predicted = metrics.deletion(model, x, e.attributions, steps=4)  # a tensor: the predicted class
    torch.testing.assert_close(predicted.clean_scores, torch.softmax(logits, 1).amax(1))


def test_dict_output_targets_take_the_space_to_their_inner_class():
    class DictModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = Linear()

        def forward(self, x):
            return {"logits": self.net(x)}

    model, x = DictModel().eval(), torch.randn(1, 3, 8, 8)
    curve = metrics.deletion(
        model, x, torch.rand(1, 1, 8, 8), target=ss.OutputTarget("logits", ss.ClassTarget(1)), steps=4
    )
    with torch.no_grad():
        expected = torch.softmax(model.net(x), 1)[:, 1]
    torch.testing.assert_close(curve.clean_scores, expected)
    assert curve.space == "probability"


# -- faithfulness correlation -------------------------------------------------------------------------------


def test_faithfulness_correlation_is_one_for_the_exact_contributions_of_a_linear_model():
    model = Linear().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    # For a linear logit, replacing a subset with 0 lowers the logit by exactly sum(w * x) over it:
    # gradient × input summed over channels is the exact drop, so the correlation is 1.
    e = ss.GradientXInput(model).explain(x, target=1)
    result = metrics.faithfulness_correlation(
        model, x, e, n_subsets=20, subset_fraction=0.1, replacement="constant", space="logit"
    )
    torch.testing.assert_close(result.score_drops, result.attribution_sums, atol=1e-4, rtol=1e-4)
    assert result.correlation.tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert result.params["subset_size"] == 6 and result.attribution_sums.shape == (2, 20)
    flipped = metrics.faithfulness_correlation(
        model, x, -e.attributions, target=1, n_subsets=20, subset_fraction=0.1, replacement="constant", space="logit"
    )
    assert flipped.correlation.tolist() == pytest.approx([-1.0, -1.0], abs=1e-5)


# -- counterfactual removal -----------------------------------------------------------------------------------


def test_hiding_the_block_drops_the_score_by_a_known_amount_and_beats_shifted_regions():
    k = 100 * N_BLOCK / N_PIXELS  # exactly the block
    result = metrics.counterfactual_removal(
        BlockReader(),
        block_image(2),
        block_mask(2),
        target=0,
        k=k,
        n_random=8,
        replacement="constant",
        space="logit",
        seed=4,
    )
    assert result.drop.tolist() == pytest.approx([1.0, 1.0])  # block mean 1 → 0
    assert result.relative_drop.tolist() == pytest.approx([1.0, 1.0])
    assert result.flipped.tolist() == [True, True]  # class 1 (logit 0.5) now wins
    assert result.region_fraction == pytest.approx(N_BLOCK / N_PIXELS)
    # Each random region is the block rolled by an offset; its drop is the share of the block it covers.
    offsets = torch.randint(1, N_PIXELS, (8,), generator=torch.Generator().manual_seed(4))
    block = block_mask()[0, 0].bool()
    overlap = [
        float((torch.roll(block, (int(o) // SIDE, int(o) % SIDE), (0, 1)) & block).sum()) / N_BLOCK for o in offsets
    ]
    torch.testing.assert_close(result.random_drops, torch.tensor([overlap, overlap]))
    assert bool((result.margin > 0).all()) and result.beats_random.tolist() == [1.0, 1.0]
    assert result.value.tolist() == pytest.approx([1 - sum(overlap) / 8] * 2)
    # A shifted region flips the prediction when it hides more than half of the block (logit 1 - s < 0.5).
    flips = sum(s > 0.5 for s in overlap) / 8
    assert result.random_flip_rate.tolist() == pytest.approx([flips, flips]) and flips < 1


def test_hiding_a_region_the_model_ignores_changes_nothing():
    outside = torch.zeros(1, 1, SIDE, SIDE)
    outside[:, :, 0:8, 0:8] = 1  # top-left corner, far from the block
    result = metrics.counterfactual_removal(
        BlockReader(), block_image(), outside, target=0, k=6.25, replacement="constant", space="logit"
    )
    assert result.drop.tolist() == [0.0] and result.flipped.tolist() == [False]


# -- completeness -----------------------------------------------------------------------------------------------


def test_completeness_gap_of_integrated_gradients():
    model = Linear().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    e = ss.IntegratedGradients(model, n_steps=4).explain(x, target=1)
    gap = metrics.completeness_gap(e)
    assert gap.absolute_gap.max() < 1e-3 and gap.relative_gap.max() < 1e-4  # linear: exact up to rounding
    with torch.no_grad():
        change = model(x)[:, 1] - model(torch.zeros_like(x))[:, 1]
    torch.testing.assert_close(gap.score_change, change)
    # A planted gap: relative = |gap| / |f(x) - f(x')|.
    from dataclasses import replace

    planted = replace(
        e,
        completeness_gap=torch.tensor([0.5, -1.0]),
        extras={"input_scores": torch.tensor([3.0, 1.0]), "baseline_scores": torch.tensor([1.0, 5.0])},
    )
    result = metrics.completeness_gap(planted)
    assert result.relative_gap.tolist() == pytest.approx([0.25, 0.25])
    assert result.absolute_gap.tolist() == [0.5, 1.0] and not result.higher_is_better
    json.dumps(result.as_dict())


def test_completeness_needs_a_path_method():
    model, x = Linear().eval(), torch.randn(1, 3, 8, 8)
    with pytest.raises(MethodError, match="IntegratedGradients"):
        metrics.completeness_gap(ss.Gradient(model).explain(x))
    with pytest.raises(InputError, match="Explanation"):
        metrics.completeness_gap(torch.zeros(1, 3, 8, 8))


# -- errors and awkward maps ----------------------------------------------------------------------------------


def test_errors_name_the_problem_and_the_fix():
    model, x = SmallCNN().eval(), torch.randn(2, 3, 8, 8)
    sal = torch.rand(2, 1, 8, 8)
    cases = [
        (lambda: metrics.deletion(model, x, torch.rand(2, 1, 4, 4)), "does not fit"),
        (lambda: metrics.deletion(model, x, torch.rand(1, 1, 8, 8)), "does not fit"),
        (lambda: metrics.deletion(model, x, sal, replacement="zeros"), "unknown replacement"),
        (lambda: metrics.deletion(model, x, sal, steps=0), "steps"),
        (lambda: metrics.deletion(model, x, sal, space="softmax"), "space"),
        (lambda: metrics.deletion(model, x, sal, chunk_size=0), "chunk_size"),
        (lambda: metrics.deletion(model, x[0], sal), "batch"),
        (lambda: metrics.pixel_flipping(model, x, sal, order="random"), "order"),
        (lambda: metrics.pixel_flipping(model, x, sal, patch_size=9), "patch_size"),
        (lambda: metrics.counterfactual_removal(model, x, sal, k=0), "percentage"),
        (lambda: metrics.counterfactual_removal(model, x, sal, k=100), "percentage"),
        (lambda: metrics.counterfactual_removal(model, x, sal, n_random=0), "n_random"),
        (lambda: metrics.faithfulness_correlation(model, x, sal, n_subsets=1), "2 subsets"),
        (lambda: metrics.faithfulness_correlation(model, x, sal, subset_fraction=1.5), "subset_fraction"),
        (lambda: metrics.deletion(model, x, "map"), "Explanation"),
    ]
    for call, words in cases:
        with pytest.raises(InputError, match=words) as info:
            call()
        assert info.value.fix, words
    with pytest.raises(NonFiniteError):
        metrics.deletion(model, x, torch.full((2, 1, 8, 8), math.nan))


def test_a_flat_map_warns_and_ranks_in_raster_order():
    model, x = BlockReader(), block_image()
    with pytest.warns(FlatMapWarning, match="raster order"):
        curve = metrics.deletion(
            model, x, torch.zeros(1, 1, SIDE, SIDE), target=0, steps=32, replacement="constant", space="logit"
        )
    # Raster order hides rows 0..7 (no block pixel) in the first 8 steps of 32 pixels each, then the block.
    assert curve.scores[0, :9].tolist() == pytest.approx([1.0] * 9)
    assert curve.scores[0, 9].item() == pytest.approx(1 - BLOCK / N_BLOCK)  # row TOP: one block row gone
    assert TOP == 8 and LEFT == 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics.deletion(model, x, block_mask(), target=0, steps=4)  # a normal map does not warn
