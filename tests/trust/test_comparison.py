"""The comparison chart's numbers: grading bands, the rows' exact cells, and measurements on models with
known answers (a model that reads one block, an 'explainer' that ignores the model)."""

from __future__ import annotations

import time
from typing import ClassVar

import pytest
import torch
from faithfulness_models import BlockReader, block_image, block_mask
from model_snapshot import assert_same, snapshot
from robustness_models import LinearImage, Sobel
from torch import nn

import saliscope as ss
from saliscope.core.cost import Cost, CostMeter
from saliscope.core.errors import InputError
from saliscope.core.targets import BoundTarget
from saliscope.methods.base import Attribution, Explainer
from saliscope.trust import Band, Comparison, Grading, MethodResult, Thresholds, compare_methods
from saliscope.trust import comparison as comparison_module
from saliscope.trust.checks import CheckReport
from saliscope.viz import display_hint

FAST = Thresholds(deletion_steps=16, deletion_random_maps=2)


# -- grading ---------------------------------------------------------------------------------------


def test_band_lower_is_better_includes_its_boundaries_and_says_n_a_for_missing_values() -> None:
    band = Band(1.0, 10.0)
    assert [band.grade(v) for v in (0.0, 1.0, 1.001, 10.0, 10.001, 1e6)] == [
        "good",
        "good",
        "moderate",
        "moderate",
        "poor",
        "poor",
    ]
    assert band.grade(None) == "n/a" and band.grade(float("nan")) == "n/a"
    assert band.rule(" s") == "good ≤ 1 s, moderate ≤ 10 s, poor > 10 s"


def test_band_higher_is_better_includes_its_boundaries() -> None:
    band = Band(0.8, 0.5, higher_is_better=True)
    assert [band.grade(v) for v in (1.0, 0.8, 0.799, 0.5, 0.499, -1.0)] == [
        "good",
        "good",
        "moderate",
        "moderate",
        "poor",
        "poor",
    ]
    assert band.grade(float("nan")) == "n/a" and band.grade(None) == "n/a"
    assert band.rule() == "good ≥ 0.8, moderate ≥ 0.5, poor < 0.5"


def test_default_grading_directions_and_cut_offs() -> None:
    g = Grading()
    assert [g.seconds.grade(v) for v in (0.05, 5.0, 30.0)] == ["good", "moderate", "poor"]
    assert [g.detail_px.grade(v) for v in (1.0, 16.0, 37.3)] == ["good", "moderate", "poor"]
    assert [g.stability.grade(v) for v in (0.96, 0.57, 0.32)] == ["good", "moderate", "poor"]
    assert [g.faithfulness.grade(v) for v in (0.3, 0.17, 0.03, -0.4)] == ["good", "moderate", "poor", "poor"]
    assert [g.sanity.grade(v) for v in (-0.6, 0.5, 0.8, 0.99)] == ["good", "good", "moderate", "poor"]


# -- the rows of hand-made results -----------------------------------------------------------------


def _result(name: str, channels: int = 1, **numbers: float) -> MethodResult:
    e = ss.Gradient(BlockReader()).explain(block_image(), 0)
    e = type(e)(torch.zeros(1, channels, 4, 4), e.target, name, {}, Cost(1, 0, 1, 0.01, None))
    values = dict(
        seconds=0.05,
        timed_runs=3,
        detail_px=1.0,
        stability=0.32,
        shift_rank_correlation=0.3,
        deletion_auc=0.2,
        insertion_auc=0.23,
        randomised_rank_correlation=0.37,
    )
    values.update(numbers)
    return MethodResult(
        name=name,
        explanation=e,
        view=display_hint(name),
        needs="gradients",
        report=CheckReport(name, ()),
        metrics_cost=Cost(0, 0, 0, 0.0, None),
        **values,
    )


def test_rows_have_the_exact_cells_and_grades_of_the_numbers() -> None:
    gradient = _result("gradient", channels=3)
    gradcam = _result(
        "gradcam",
        seconds=12.0,
        timed_runs=1,
        detail_px=37.34,
        stability=0.96,
        shift_rank_correlation=0.957,
        deletion_auc=0.24,
        insertion_auc=0.65,
        randomised_rank_correlation=float("nan"),
    )
    rows = {r.name: r for r in Comparison((gradient, gradcam), Grading(), Thresholds(), timing_runs=3).rows()}
    assert list(rows) == ["time (s / image)", "finest detail (px)", "stability", "faithfulness", "sanity", "needs"]
    time_row = rows["time (s / image)"]
    assert (list(time_row.texts), list(time_row.grades)) == (["0.05", "12.00"], ["good", "poor"])
    assert list(time_row.details) == ["min of 3 runs", "first call only"]
    assert "fastest of 3 after a warm-up" in time_row.note
    assert list(rows["finest detail (px)"].texts) == ["1.0", "37.3"]
    assert list(rows["finest detail (px)"].grades) == ["good", "poor"]
    assert list(rows["stability"].grades) == ["poor", "good"]
    assert list(rows["stability"].details) == ["shift alone 0.30", "shift alone 0.96"]
    faith = rows["faithfulness"]
    assert (list(faith.texts), list(faith.grades)) == (["+0.03", "+0.41"], ["poor", "good"])
    assert list(faith.details) == ["ins 0.23 − del 0.20", "ins 0.65 − del 0.24"]
    assert (list(rows["sanity"].texts), list(rows["sanity"].grades)) == (["0.37", "n/a"], ["good", "n/a"])
    needs = rows["needs"]
    assert needs.grades is None and not needs.graded and "not graded" in needs.caption()
    # Which map each column was judged on, in words: a magnitude over channels, a CAM's positive part.
    assert (gradient.scored_on, gradcam.scored_on) == ("magnitude (max |RGB|)", "positive part")


def test_a_negative_faithfulness_is_printed_with_its_sign_and_graded_poor() -> None:
    row = Comparison((_result("x", deletion_auc=0.6, insertion_auc=0.2),), Grading(), Thresholds()).rows()[3]
    assert (row.texts[0], row.grades[0]) == ("-0.40", "poor")


# -- measured on models with known answers -----------------------------------------------------------


class Fixed(Explainer):
    """Returns the same map for every image, whatever the model says; ``name`` picks its display view."""

    name: ClassVar[str] = "fixed"

    def __init__(self, model: nn.Module, maps: torch.Tensor, name: str = "fixed") -> None:
        super().__init__(model)
        self.maps = maps
        self.name = name  # type: ignore[misc]

    def _attribute(self, net: nn.Module, x: torch.Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        return Attribution(self.maps.to(x).expand(x.shape[0], -1, -1, -1).clone())


def test_the_perfect_map_is_faithful_and_the_inverted_one_is_not() -> None:
    model, x = BlockReader(), block_image()
    before = snapshot(model)
    inverted = 1 - block_mask()  # every pixel but the block: the block is removed last, restored last
    result = compare_methods(
        model,
        x,
        {"perfect": Fixed(model, block_mask()), "inverted": Fixed(model, inverted)},
        0,
        thresholds=FAST,
        timing_runs=1,
    )
    perfect, away = result.results
    assert perfect.faithfulness > 0.3 and result.rows()[3].grades[0] == "good"
    assert perfect.deletion_auc < away.deletion_auc and perfect.insertion_auc > away.insertion_auc
    assert away.faithfulness < 0 and result.rows()[3].grades[1] == "poor"
    # A fixed map ignores the model: re-initialising it leaves the map as it was.
    assert perfect.randomised_rank_correlation == pytest.approx(1.0) and result.rows()[4].grades[0] == "poor"
    assert_same(before, snapshot(model))


def test_each_method_is_scored_on_the_map_it_is_shown_as() -> None:
    model, x = BlockReader(), block_image()
    against = -block_mask().expand(1, 3, -1, -1)  # strongly against the class on the block, in every channel
    explainers = {
        "as gradient": Fixed(model, against, name="gradient"),  # shown as a magnitude
        "as occlusion": Fixed(model, against, name="occlusion"),
    }  # shown signed
    magnitude, signed = compare_methods(model, x, explainers, 0, thresholds=FAST, timing_runs=1).results
    assert (magnitude.view.reduce, magnitude.view.evidence) == ("max-abs", "absolute")
    assert magnitude.faithfulness > 0.3 and signed.faithfulness < 0  # the magnitude puts the block first
    assert torch.equal(magnitude.shown_map(), block_mask())
    assert magnitude.as_dict()["scored_on"] == {
        "reduce": "max-abs",
        "evidence": "absolute",
        "label": "magnitude (max |RGB|)",
    }
    # The deletion flag judged that same map: the magnitude beats chance, the signed map does not.
    assert magnitude.report["deletion"].status == "pass" and signed.report["deletion"].status == "fail"


def test_an_explainer_that_ignores_the_model_gets_a_poor_sanity_grade_and_the_gradient_a_good_one() -> None:
    model = LinearImage(h=16, w=16).eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    result = compare_methods(
        model, x, {"sobel": Sobel(model), "gradient": ss.Gradient(model)}, 1, thresholds=FAST, timing_runs=1
    )
    sobel, gradient = result.results
    assert sobel.randomised_rank_correlation > 0.99 and gradient.randomised_rank_correlation < 0.5
    assert list(result.rows()[4].grades) == ["poor", "good"]
    assert sobel.report["sanity"].status == "fail" and gradient.report["sanity"].status == "pass"
    assert (sobel.needs, gradient.needs) == ("gradients", "gradients")


class Sleepy(Explainer):
    """Sleeps ``delays[i]`` seconds on call ``i`` (0 after the list): a method disturbed by other processes."""

    name: ClassVar[str] = "sleepy"

    def __init__(self, model: nn.Module, delays: list[float]) -> None:
        super().__init__(model)
        self.delays, self.calls = delays, 0

    def _attribute(self, net: nn.Module, x: torch.Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        time.sleep(self.delays[self.calls] if self.calls < len(self.delays) else 0.0)
        self.calls += 1
        return Attribution(block_mask(x.shape[0]).to(x))


def test_time_is_the_fastest_run_after_a_warm_up() -> None:
    model, x = BlockReader(), block_image()
    sleepy = Sleepy(model, [0.25, 0.3, 0.04, 0.2])  # warm-up, then three timed runs: 0.04 s is the least disturbed
    seen: list[str] = []
    result = compare_methods(
        model,
        x,
        {"sleepy": sleepy},
        0,
        thresholds=FAST,
        timing_runs=3,
        on_method=seen.append,
        on_result=lambda r: seen.append(f"{r.name} done"),
    )
    r = result.results[0]
    assert 0.04 <= r.seconds < 0.2 and r.timed_runs == 3
    assert seen == ["sleepy", "sleepy done"] and r.elapsed_s >= 0.25 + 0.3 + 0.04 + 0.2
    assert result.as_dict()["methods"][0]["timed_runs"] == 3 and "fastest of 3" in result.as_dict()["timing"]


def test_a_slow_method_is_timed_by_its_first_call_alone(monkeypatch) -> None:
    monkeypatch.setattr(comparison_module, "_TIME_ONCE_AFTER_S", 0.1)
    model, x = BlockReader(), block_image()
    sleepy = Sleepy(model, [0.15])  # any re-run would take ~0 s and win the minimum
    r = compare_methods(model, x, {"slow": sleepy}, 0, thresholds=FAST, timing_runs=3).results[0]
    assert r.seconds >= 0.15 and r.timed_runs == 1
    assert Comparison((r,), Grading(), Thresholds()).rows()[0].details[0] == "first call only"


def test_compare_refuses_a_batch_and_zero_timing_runs() -> None:
    model, x = BlockReader(), block_image(2)
    with pytest.raises(InputError, match="one image at a time"):
        compare_methods(model, x, {"g": ss.Gradient(model)})
    with pytest.raises(InputError, match="timing_runs"):
        compare_methods(model, x[:1], {"g": ss.Gradient(model)}, timing_runs=0)


def test_sanity_compares_the_shown_signed_map_not_its_magnitude() -> None:
    from saliscope.metrics.sanity import randomisation_stages, randomised_copies
    from saliscope.metrics.similarity import spearman

    model = LinearImage(h=16, w=16).eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    method = ss.GradientXInput(model)  # shown signed: the channel sum of W ⊙ x
    r = compare_methods(model, x, {"gxi": method}, 1, thresholds=FAST, timing_runs=1).results[0]
    assert (r.view.reduce, r.view.evidence) == ("sum", "signed")
    ((_, twin),) = randomised_copies(method, randomisation_stages(model)[:1], seed=0)
    before, after = method.explain(x, 1).saliency(), twin.explain(x, 1).saliency()
    assert r.randomised_rank_correlation == pytest.approx(float(spearman(before, after)[0]))
    assert abs(float(spearman(before.abs(), after.abs())[0]) - r.randomised_rank_correlation) > 0.05
