"""Flags: each check fires on a case built to fail it, passes one built to pass it, and leaves the model alone."""

from __future__ import annotations

import contextlib

import pytest
import torch
from faithfulness_models import BlockReader, block_image, block_mask
from model_snapshot import assert_same, snapshot
from robustness_models import LinearImage, Sobel
from torch import nn

import saliscope as ss
from saliscope.core.cost import Cost
from saliscope.core.explanation import Explanation
from saliscope.trust import CHECKS, Measurements, Thresholds, check, judge, measure
from saliscope.trust.checks import shifted_maps


def _explanation(maps: torch.Tensor, like: Explanation) -> Explanation:
    return Explanation(maps, like.target, "handmade", {}, Cost(0, 0, 0, 0.0, None))


def test_map_check_flags_flat_and_nan_maps_and_passes_a_varying_one() -> None:
    model, x = BlockReader(), block_image(3)
    e = ss.Gradient(model).explain(x, 0)
    maps = block_mask(3)
    maps[1] = 0.0  # flat
    maps[2, 0, 0, 0] = float("nan")
    report = check(_explanation(maps, e), model, x, checks=("map",))
    verdict = report["map"]
    assert verdict.status == "fail" and verdict.failed == (False, True, True)
    assert "flat" in verdict.reason and "in 2 of 3 images" in verdict.reason
    assert check(_explanation(block_mask(1), e[:1]), model, x[:1], checks=("map",)).passed


def test_deletion_check_passes_the_perfect_map_and_fails_the_inverted_one() -> None:
    model, x = BlockReader(), block_image(2)
    e = ss.Gradient(model).explain(x, 0)
    perfect = check(_explanation(block_mask(2), e), model, x, checks=("deletion",))
    inverted = check(_explanation(1 - block_mask(2), e), model, x, checks=("deletion",))
    assert perfect.passed and perfect["deletion"].status == "pass"
    assert inverted["deletion"].status == "fail" and inverted["deletion"].failed == (True, True)
    assert "no better than the same map moved to random places" in inverted["deletion"].reason
    # The value judged is the map's normalised deletion AUC minus chance's; the threshold is -margin.
    found = measure(_explanation(block_mask(2), e), model, x, checks="deletion")
    margins = tuple(a - c for a, c in zip(found.deletion_auc, found.random_deletion_auc, strict=True))
    assert perfect["deletion"].values == margins and all(v < 0 for v in margins)
    assert perfect["deletion"].threshold == 0.0 and all(v > 0 for v in inverted["deletion"].values)
    strict = judge(found, checks="deletion", thresholds=Thresholds(deletion_margin=-min(margins) + 0.01))
    assert strict["deletion"].status == "fail" and strict["deletion"].threshold == min(margins) - 0.01


def test_chance_maps_are_the_map_moved_not_changed() -> None:
    m = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    moved = shifted_maps(m, 3, seed=1)
    for other in moved:
        assert not torch.equal(other, m)
        assert torch.equal(other.flatten(1).sort(dim=1).values, m.flatten(1).sort(dim=1).values)
    assert all(torch.equal(a, b) for a, b in zip(moved, shifted_maps(m, 3, seed=1), strict=True))


def test_sanity_flags_an_edge_detector_and_passes_the_gradient() -> None:
    model = LinearImage(h=16, w=16).eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    blind = Sobel(model)
    e = blind.explain(x, 1)
    report = check(e, model, x, explainer=blind, checks=("sanity",))
    assert report["sanity"].status == "fail"
    assert "barely changes when the top of the model is randomised" in report["sanity"].reason
    assert report["sanity"].values == tuple([1.0] * 2) or all(v > 0.99 for v in report["sanity"].values)
    g = ss.Gradient(model)
    assert check(g.explain(x, 1), model, x, explainer=g, checks=("sanity",)).passed


def test_stability_flags_a_shift_sensitive_map_and_is_skipped_without_the_explainer() -> None:
    model = LinearImage(h=16, w=16).eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    g = ss.Gradient(model)
    e = g.explain(x, 0)
    # A linear model's gradient is its fixed weight pattern: shifting the image does not move it.
    report = check(e, model, x, explainer=g, checks=("stability", "completeness"))
    assert report["stability"].status == "fail" and "1-px shifts" in report["stability"].reason
    assert report["completeness"].status == "skipped" and "not a path method" in report["completeness"].reason
    alone = check(e, model, x, checks=("stability",))
    assert alone["stability"].status == "skipped" and "explainer=" in alone["stability"].reason
    sobel = Sobel(model)  # edges of the image move with it: stable
    assert check(sobel.explain(x, 0), model, x, explainer=sobel, checks=("stability",)).passed


def test_completeness_flags_a_coarse_path_and_passes_a_fine_one() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(beta=4), nn.Flatten(), nn.Linear(4 * 64, 2))
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(5)) * 3
    coarse = ss.IntegratedGradients(model, n_steps=1, rule="riemann-left", baseline="zero").explain(x, 0)
    fine = ss.IntegratedGradients(model, n_steps=64, baseline="zero").explain(x, 0)
    bad = check(coarse, model, x, checks=("completeness",))["completeness"]
    assert bad.status == "fail" and bad.values[0] > 0.05 and "adaptively" in bad.reason
    assert check(fine, model, x, checks=("completeness",)).passed
    # The adaptive default passes; starved of evaluations it fails, and the fix names its budget.
    assert check(ss.IntegratedGradients(model).explain(x, 0), model, x, checks=("completeness",)).passed
    starved = ss.IntegratedGradients(model, max_evals=3).explain(x, 0)
    short = check(starved, model, x, checks=("completeness",))["completeness"]
    assert short.status == "fail" and "max_evals (--max-evals)" in short.reason


def test_thresholds_decide_and_judging_needs_no_model_calls() -> None:
    model = LinearImage(h=16, w=16).eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    g = ss.Gradient(model)
    found = measure(g.explain(x, 0), model, x, explainer=g, checks=("stability",))
    strict, lax = Thresholds(min_shift_rank_correlation=0.5), Thresholds(min_shift_rank_correlation=-1.0)
    assert judge(found, checks=("stability",), thresholds=strict)["stability"].status == "fail"
    lenient = judge(found, checks=("stability",), thresholds=lax)["stability"]
    assert lenient.status == "pass" and lenient.threshold == -1.0


def test_every_check_leaves_the_model_as_found_also_when_it_fails_half_way() -> None:
    model = LinearImage(h=16, w=16)
    model.train()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    x_before = x.clone()
    g = ss.Gradient(model)
    before = snapshot(model)
    report = check(g.explain(x, 0), model, x, explainer=g, checks=CHECKS)
    assert len(report.verdicts) == len(CHECKS) and report.cost is not None and report.cost.forward_passes > 0
    assert_same(before, snapshot(model))
    assert torch.equal(x, x_before)

    calls = {"n": 0}

    def fail_on_fifth(module, inputs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("boom")

    handle = model.register_forward_pre_hook(fail_on_fifth)
    try:
        before = snapshot(model)
        with contextlib.suppress(RuntimeError):
            check(g.explain(x, 0), model, x, explainer=g, checks=CHECKS)
        assert_same(before, snapshot(model))
    finally:
        handle.remove()


def test_unknown_checks_are_a_clear_error() -> None:
    import pytest

    from saliscope.core.errors import InputError

    model, x = BlockReader(), block_image(1)
    e = ss.Gradient(model).explain(x, 0)
    with pytest.raises(InputError, match="unknown or no checks"):
        check(e, model, x, checks=("vibes",))
    assert [v.check for v in check(e, model, x, checks="map").verdicts] == ["map"]  # one name, not its letters
    with pytest.raises(InputError, match="needs an Explanation"):
        check(e.attributions, model, x)  # type: ignore[arg-type]


def test_known_results_are_reused_and_give_the_same_verdicts() -> None:
    from saliscope.metrics import consistency, deletion, model_randomisation, randomisation_stages
    from saliscope.metrics.sanity import Stage

    model = LinearImage(h=16, w=16).eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    g = ss.Gradient(model)
    e = g.explain(x, 0)
    t = Thresholds()
    top = randomisation_stages(model)[: t.sanity_stages]
    group = Stage("+".join(s.name for s in top), tuple(n for s in top for n in s.parameters))
    known = {
        "deletion": deletion(model, x, e, e.target, steps=t.deletion_steps),
        "consistency": consistency(g, x, e.target, transforms=("noise", "shift1")),
        "sanity": model_randomisation(g, x, e.target, stages=[group]),
    }
    checks = ("deletion", "stability", "sanity")
    fresh, reused = (
        measure(e, model, x, explainer=g, checks=checks),
        measure(e, model, x, explainer=g, checks=checks, known=known),
    )
    for field_name in ("deletion_auc", "random_deletion_auc", "shift_rank_correlation", "randomised_rank_correlation"):
        assert getattr(reused, field_name) == pytest.approx(getattr(fresh, field_name), rel=1e-5, abs=1e-6), field_name
    # Only the chance maps' deletion curves were run again: 3 curves, no explanations.
    assert reused.cost.backward_passes == 0 and fresh.cost.backward_passes > 0
    assert reused.cost.forward_passes == 3 * (1 + t.deletion_steps)  # the clean batch and the steps of each


def test_a_batch_quotes_its_best_image_when_all_pass_and_its_worst_when_some_fail() -> None:
    def found(shift: list[float], randomised: list[float], gaps: list[float]) -> Measurements:
        n = len(shift)
        return Measurements(
            "m",
            [True] * n,
            [1.0] * n,
            [1.0] * n,
            shift_rank_correlation=shift,
            randomised_rank_correlation=randomised,
            completeness_gap=gaps,
        )

    checks = ("stability", "sanity", "completeness")
    passing = judge(found([0.61, 0.93, 0.7], [0.5, -0.2, 0.1], [0.04, 0.001, 0.02]), checks=checks)
    assert "0.93 ≥ 0.5 in all 3 images (the best shown)" in passing["stability"].reason  # not 0.61
    assert "-0.20 ≤ 0.8 in all 3 images" in passing["sanity"].reason
    assert "0.1% ≤ 5% in all 3 images" in passing["completeness"].reason
    failing = judge(found([0.45, 0.93, 0.2], [0.85, 0.95, 0.1], [0.2, 0.9, 0.01]), checks=checks)
    assert "rank correlation 0.20 < 0.5 in 2 of 3 images" in failing["stability"].reason  # the worst, not 0.45
    assert "rank correlation 0.95 > 0.8 in 2 of 3 images" in failing["sanity"].reason
    assert "completeness gap 90.0% > 5%" in failing["completeness"].reason
    one = judge(found([0.7], [0.1], [0.02]), checks=checks)
    assert one["stability"].reason.endswith("0.70 ≥ 0.5")  # one image: nothing about a batch
