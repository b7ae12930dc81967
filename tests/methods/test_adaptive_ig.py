"""Adaptive Integrated Gradients: exact answers on models whose path integral is known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
from model_snapshot import assert_same, snapshot
from tiny_models import C, H, Linear, SmallCNN, W
from torch import nn

import saliscope as ss
from saliscope.core.errors import MethodError
from saliscope.methods.adaptive_quadrature import UNIT, PathPlan, alpha, map_errors, triadic_positions


class Kinked(nn.Module):
    """``relu(w·x - t)`` per class: along the path from zero, the score is flat until ``a* = t / (w·x)`` and
    linear after it, so IG is exactly ``x * w * (1 - a*)`` and the gradient jumps once, at the kink."""

    def __init__(self, threshold: float = 6.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.weight = nn.Parameter(torch.randn(2, C * H * W, generator=g).abs() / 8)
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x.flatten(1) @ self.weight.T - self.threshold)

    def kink(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return self.threshold / (x.flatten(1) @ self.weight[k])

    def exact(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return x * self.weight[k].view(1, C, H, W) * (1 - self.kink(x, k)).view(-1, 1, 1, 1)


class Steep(nn.Module):
    """A smooth score, ``8 * sigmoid(6 * (w·x - 4))``, that rises steeply in a narrow stretch of the path
    from zero: what a uniform rule spends most of its steps away from."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(6)
        self.weight = nn.Parameter(torch.randn(2, C * H * W, generator=g).abs() / 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 8 * torch.sigmoid(6 * (x.flatten(1) @ self.weight.T - 4))


def bright(n: int = 3, seed: int = 0) -> torch.Tensor:
    """Positive images, so ``w·x`` grows along the path from zero (w is positive)."""
    return torch.rand(n, C, H, W, generator=torch.Generator().manual_seed(seed)) + 0.5


def relative_gap(e: ss.Explanation) -> torch.Tensor:
    change = e.extras["input_scores"] - e.extras["baseline_scores"]
    return e.completeness_gap.abs() / change.abs()


# -- the rule itself -------------------------------------------------------------------------------------


def test_the_rule_is_nested_and_its_weights_are_the_pieces():
    plan = PathPlan({0: 0.0, UNIT: 1.0}, tolerance=0.05, max_evals=50, scan_depth=0)
    plan._split(0)
    plan._split(2)
    nodes = plan.nodes()
    assert [round(alpha(p), 6) for p, _ in nodes] == [round(v, 6) for v in (1 / 6, 1 / 2, 13 / 18, 5 / 6, 17 / 18)]
    assert math.isclose(sum(w for _, w in nodes), 1.0)
    assert plan.pieces[1].slope is None and plan.pieces[3].depth == 2
    # The middle third keeps its parent's midpoint, so its node (and what it measured) survives a split.
    plan.pieces[3].slope = 2.0
    before = plan.pieces[3].mid
    plan._split(3)
    assert plan.pieces[4].mid == before and plan.pieces[4].slope == 2.0
    assert plan.pieces[3].slope is None and plan.pieces[5].slope is None


def test_the_scan_predicts_where_the_score_bends():
    # The score rises between a = 1/3 and 4/9 and is flat elsewhere: only the piece holding it is split.
    scan = triadic_positions(2)
    scores = {p: (0.0 if alpha(p) <= 1 / 3 + 1e-9 else 1.0) for p in scan}
    plan = PathPlan(scores, tolerance=0.05, max_evals=50, scan_depth=2)
    plan.presplit(budget=25)
    widths = sorted({round(p.width, 6) for p in plan.pieces})
    assert widths == [round(1 / 9, 6), round(1 / 3, 6)]
    narrow = [p for p in plan.pieces if round(p.width, 6) == round(1 / 9, 6)]
    assert all(1 / 3 - 1e-9 <= alpha(p.lo) <= 2 / 3 for p in narrow)


def test_map_errors_vanish_where_the_integrand_is_linear():
    plan = PathPlan({0: 0.0, UNIT: 1.0}, tolerance=0.05, max_evals=50, scan_depth=0)
    plan._split(0)
    plan._split(1)
    where = [alpha(p.mid) for p in plan.pieces]
    line = [
        torch.tensor([1.0, -2.0], dtype=torch.float64) * a + torch.tensor([0.5, 3.0], dtype=torch.float64)
        for a in where
    ]
    errors = map_errors(plan, line)
    assert errors[1:-1] == pytest.approx([0.0] * (len(errors) - 2), abs=1e-12)  # inner pieces: a line is exact
    jump = [torch.tensor([0.0]) if a < 0.5 else torch.tensor([1.0]) for a in where]
    assert max(map_errors(plan, jump)) > 0.01


# -- on models with known answers ------------------------------------------------------------------------


def test_linear_model_needs_the_fewest_evaluations_and_is_exact(linear, batch):
    e = ss.IntegratedGradients(linear, baseline="zero").explain(batch, target=3)
    torch.testing.assert_close(e.attributions, batch * linear.weight_map(3), rtol=1e-5, atol=1e-5)
    assert e.extras["evaluations"].tolist() == [3, 3, 3] and bool(e.extras["converged"].all())
    assert e.params["rule"] == "adaptive" and e.params["n_steps"] is None


def test_nodes_concentrate_around_a_kink_and_the_map_is_exact():
    model, x = Kinked(), bright()
    kinks = model.kink(x, 0).detach()
    assert bool(((kinks > 0.2) & (kinks < 0.8)).all())  # the kinks sit inside the path
    exact = model.exact(x, 0).detach()
    counts = []
    for tolerance in (0.05, 0.002):
        e = ss.IntegratedGradients(model, baseline="zero", tolerance=tolerance).explain(x, target=0)
        error = (e.attributions - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)
        assert bool((error <= tolerance).all()) and bool((relative_gap(e) <= tolerance).all()), (error, tolerance)
        assert bool(e.extras["converged"].all())
        near = []
        for i in range(len(x)):
            nodes, weights = e.extras["nodes"][i], e.extras["weights"][i]
            nodes, weights = nodes[~torch.isnan(nodes)], weights[~torch.isnan(weights)]
            # Every piece refined finer than the scan's cells (1/27 of the path) lies by the kink.
            fine = nodes[weights < 1 / 27 - 1e-6]
            assert bool(((fine - kinks[i]).abs() < 0.03).all()), (nodes.tolist(), float(kinks[i]))
            near.append(int(((nodes - kinks[i]).abs() < 0.02).sum()))
            far = int(((nodes - kinks[i]).abs() >= 0.1).sum())
            near.append(-far)
        counts.append(near)
    # A tighter tolerance adds nodes at the kink only: no more far from it than before, more next to it.
    coarse, fine = counts
    assert all(f >= c for f, c in zip(fine[1::2], coarse[1::2], strict=True))  # (far counts are negated)
    assert all(f > c for f, c in zip(fine[0::2], coarse[0::2], strict=True))


def test_a_smooth_steep_model_meets_the_tolerance_with_fewer_evaluations_than_a_uniform_rule():
    model, x = Steep(), bright(2, seed=1)
    adaptive = ss.IntegratedGradients(model, baseline="zero").explain(x, target=1)
    assert bool((relative_gap(adaptive) <= 0.05).all())
    reached = float(relative_gap(adaptive).max())

    def meets(rule: str, steps: int) -> bool:
        fixed = ss.IntegratedGradients(model, baseline="zero", rule=rule, n_steps=steps).explain(x, target=1)
        return bool((relative_gap(fixed) <= reached).all())

    needed = {}
    for rule in ("riemann-middle", "riemann-trapezoid"):
        # The fewest uniform steps that reach the same gap: the first power of two that does, then bisection.
        high = 2
        while not meets(rule, high):
            high *= 2
        low = high // 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if meets(rule, middle) else (middle, high)
        needed[rule] = high
    assert int(adaptive.extras["evaluations"].max()) < min(needed.values()), (adaptive.extras["evaluations"], needed)


def test_too_small_a_budget_is_reported_as_not_converged_with_the_gap():
    model, x = Steep(), bright(2, seed=1)
    e = ss.IntegratedGradients(model, baseline="zero", max_evals=3).explain(x, target=1)
    assert not bool(e.extras["converged"].any())
    assert e.extras["evaluations"].tolist() == [3, 3]
    change = e.extras["input_scores"] - e.extras["baseline_scores"]
    torch.testing.assert_close(e.completeness_gap, e.attributions.flatten(1).sum(1) - change)
    assert bool((relative_gap(e) > 0.05).any())


def test_batched_equals_alone_whatever_the_chunks_and_memory(cnn, batch):
    together = ss.IntegratedGradients(cnn).explain(batch, target=[0, 1, 2])
    for i in range(len(batch)):
        alone = ss.IntegratedGradients(cnn, chunk_size=1 if i == 0 else None).explain(batch[i : i + 1], target=i)
        torch.testing.assert_close(together.attributions[i : i + 1], alone.attributions, rtol=1e-5, atol=1e-6)
        assert int(together.extras["evaluations"][i]) == int(alone.extras["evaluations"][0])
    # A budget so small that every image is refined in a group of its own gives the same maps.
    grouped = ss.IntegratedGradients(cnn, memory_budget=80_000).explain(batch, target=[0, 1, 2])
    torch.testing.assert_close(grouped.attributions, together.attributions, rtol=1e-5, atol=1e-6)
    again = ss.IntegratedGradients(cnn).explain(batch, target=[0, 1, 2])
    assert torch.equal(again.attributions, together.attributions)


@pytest.mark.parametrize("baseline", ["zero", "blur", "uniform"])
def test_any_baseline_meets_the_tolerance_and_leaves_the_model_as_found(baseline, batch):
    model = SmallCNN(smooth=True).train()
    before = snapshot(model)
    x = batch.clone()
    e = ss.IntegratedGradients(model, baseline=baseline).explain(x, target=1)
    assert_same(before, snapshot(model))
    assert torch.equal(x, batch)
    assert bool(e.extras["converged"].all()) and bool((relative_gap(e) <= 0.05).all())
    assert e.cost.backward_passes == int(e.extras["evaluations"].sum())


def test_smoothgrad_over_adaptive_ig(cnn, batch):
    smooth = ss.SmoothGrad(ss.IntegratedGradients(cnn), n_samples=3, sigma=0.1, seed=0)
    e = smooth.explain(batch, target=1)
    assert e.attributions.shape == batch.shape and bool(torch.isfinite(e.attributions).all())
    assert e.params["inner.rule"] == "adaptive"
    alone = smooth.explain(batch[1:2], target=1)
    torch.testing.assert_close(e.attributions[1:2], alone.attributions, rtol=1e-5, atol=1e-6)


def test_fixed_steps_are_todays_quadrature(cnn, batch):
    fixed = ss.IntegratedGradients(cnn, n_steps=16).explain(batch, target=1)
    assert fixed.params["rule"] == "gauss-legendre" and fixed.params["n_steps"] == 16
    assert fixed.extras["evaluations"].tolist() == [16, 16, 16] and "nodes" not in fixed.extras
    assert fixed.cost.backward_passes == 3 * 16
    middle = ss.IntegratedGradients(cnn, rule="riemann-middle").explain(batch, target=1)
    assert middle.params["n_steps"] == 32


def test_contradictory_arguments_name_the_fix(cnn):
    with pytest.raises(MethodError, match="max_evals"):
        ss.IntegratedGradients(cnn, n_steps=16, rule="adaptive")
    with pytest.raises(MethodError, match="fixed steps"):
        ss.IntegratedGradients(cnn, n_steps=16, max_evals=40)
    with pytest.raises(ss.SaliscopeError, match="max_evals"):
        ss.IntegratedGradients(cnn, max_evals=2)
    with pytest.raises(ss.SaliscopeError, match="tolerance"):
        ss.IntegratedGradients(cnn, tolerance=0)
    with pytest.raises(MethodError, match="adaptive"):
        ss.IntegratedGradients(cnn, rule="simpson")


def test_a_flat_path_stops_at_once():
    # f(x) == f(x'): nothing to integrate, and no budget is spent chasing a zero tolerance.
    model = Linear().eval()
    x = torch.zeros(1, C, H, W)
    e = ss.IntegratedGradients(model, baseline="zero").explain(x, target=0)
    assert int(e.extras["evaluations"][0]) <= 3 and bool(e.extras["converged"][0])
    assert float(e.attributions.abs().max()) == 0.0
