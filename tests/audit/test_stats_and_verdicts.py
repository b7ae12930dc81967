"""Streaming accumulators against numpy, exact checkpoints, bounded heaps, and the verdict rules and wording."""

from __future__ import annotations

import numpy as np
import pytest

from saliscope.audit import AuditStats, RegionFinding, Thresholds, Welford, judge
from saliscope.audit.findings import spot_region
from saliscope.audit.stats import Ranked, TopN, best_window, excess
from saliscope.audit.store import decode_map, encode_map


def test_welford_matches_numpy_and_round_trips_exactly() -> None:
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 1e-3, size=(500, 4, 5)) + 1e4  # a large offset: naive sum-of-squares would cancel
    w = Welford((4, 5))
    for v in values:
        w.add(v)
    np.testing.assert_allclose(w.mean, values.mean(0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(w.std(), values.std(0, ddof=0), rtol=1e-7)
    copy = Welford.from_state(w.state("x"), "x")
    assert copy.count == 500 and np.array_equal(copy.mean, w.mean) and np.array_equal(copy.m2, w.m2)


def test_audit_stats_state_is_exact_and_does_not_grow_with_images() -> None:
    rng = np.random.default_rng(1)

    def fill(n: int) -> AuditStats:
        stats = AuditStats(["a", "b"], n_regions=3, grid=4)
        for i in range(n):
            flat = i % 7 == 0
            stats.add(
                "ab"[i % 2],
                grid_map=None if flat else rng.random((4, 4)),
                masses=None if flat else rng.random(3),
                pixels=rng.random((3, 6, 6)),
                correct=bool(i % 3),
            )
        return stats

    small, large = fill(10), fill(400)
    assert {k: v.shape for k, v in small.state().items()} == {k: v.shape for k, v in large.state().items()}
    again = AuditStats.from_state(large.state())
    for key, value in large.state().items():
        assert np.array_equal(again.state()[key], value), key
    a = large.per_class["a"]
    assert (a.images, a.flat, a.pixel_count) == (200, 29, 200)
    assert a.maps.count == a.masses.count == 171


def test_top_n_keeps_the_largest_and_breaks_ties_by_arrival() -> None:
    top = TopN(3)
    for order, mass in enumerate([0.2, 0.9, 0.5, 0.9, 0.1, 0.7]):
        top.add(Ranked(mass, order, f"k{order}", {}))
    assert [(r.mass, r.key) for r in top.best()] == [(0.9, "k1"), (0.9, "k3"), (0.7, "k5")]


def test_best_window_and_excess() -> None:
    rng = np.random.default_rng(2)
    m = rng.random((9, 9))
    r0, r1, c0, c1 = best_window(m, 3)
    brute = max((m[i : i + 3, j : j + 3].sum(), i, j) for i in range(7) for j in range(7))
    assert (r0, c0) == (brute[1], brute[2]) and (r1 - r0, c1 - c0) == (3, 3)
    assert excess(0.1, 0.1) == 0.0 and excess(1.0, 0.04) == 1.0 and excess(0.0, 0.5) == -1.0


def test_spot_size_is_chosen_by_excess_not_mass() -> None:
    m = np.zeros((16, 16))
    m[1:4, 1:4] = 0.8 / 9  # a 3-cell marker holding 80% of the mass ...
    m += 0.2 / 256  # ... over an even floor
    spot = spot_region(m, sides=(0.2, 0.3, 0.5), input_size=(32, 32))
    assert spot.box == (2 / 32, 2 / 32, 8 / 32, 8 / 32)  # the 3-cell window; a bigger one only adds area


def test_maps_are_stored_compactly_as_float16() -> None:
    m = np.random.default_rng(3).dirichlet(np.ones(256)).reshape(16, 16)
    text = encode_map(m)
    assert len(text) == 684
    np.testing.assert_allclose(decode_map(text, 16), m, rtol=1e-3, atol=1e-7)  # float16: 3 digits


def finding(
    name: str,
    kind: str,
    mass: float,
    area: float,
    *,
    share: float = 1.0,
    others: float | None = 0.05,
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.3, 0.3),
) -> RegionFinding:
    return RegionFinding(name, kind, box, kind == "border", area, mass, 0.1, share, others, (0,) * 10)  # type: ignore[arg-type]


def test_statistics_of_parts_merge_into_those_of_the_whole() -> None:
    """The distributed seam: partitions folded separately and merged give the single pass's statistics."""
    rng = np.random.default_rng(2)
    rows = [
        (
            "ab"[i % 3 == 0],
            None if i % 5 == 0 else rng.random((4, 4)),
            rng.random(3),
            rng.random((3, 6, 6)),
            bool(i % 2),
        )
        for i in range(90)
    ]

    def fold(part: list) -> AuditStats:
        stats = AuditStats(["a", "b"], n_regions=3, grid=4)
        for label, grid_map, masses, pixels, correct in part:
            stats.add(
                label, grid_map=grid_map, masses=None if grid_map is None else masses, pixels=pixels, correct=correct
            )
        return stats

    whole = fold(rows)
    merged = fold([])
    for part in (rows[:7], rows[7:50], [], rows[50:]):
        merged.merge(fold(part))
    for name in ("a", "b"):
        w, m = whole.per_class[name], merged.per_class[name]
        assert (m.images, m.flat, m.correct, m.judged, m.pixel_count) == (
            w.images,
            w.flat,
            w.correct,
            w.judged,
            w.pixel_count,
        )
        assert m.maps.count == w.maps.count and m.masses.count == w.masses.count
        for mine, theirs in ((m.maps, w.maps), (m.masses, w.masses)):
            np.testing.assert_allclose(mine.mean, theirs.mean, rtol=0, atol=1e-12)
            np.testing.assert_allclose(mine.std(), theirs.std(), rtol=0, atol=1e-12)
        np.testing.assert_allclose(m.pixel_sum, w.pixel_sum, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="same audit"):
        merged.merge(AuditStats(["a", "b"], n_regions=4, grid=4))


def test_a_concentrated_consistent_corner_is_a_shortcut() -> None:
    findings = (
        finding("border", "border", 0.5, 0.36, box=(0.1, 0.1, 0.9, 0.9)),
        finding("top-left", "corner", 0.71, 0.09),
        finding("spot", "spot", 0.75, 0.1, box=(0.0, 0.0, 0.3125, 0.3125)),
    )
    v = judge("pneumonia", images=480, measured=480, findings=findings, thresholds=Thresholds(), input_size=(64, 64))
    assert v.status == "shortcut" and v.flagged == ("top-left", "spot")
    assert v.lead is not None and v.lead.name == "top-left"  # a named region leads over a spot
    assert v.line == (
        "class 'pneumonia': 71% of saliency mass in the top-left corner (30% of each side, 9% of the"
        " area) across 480 images (100% of them individually; other classes: 5%) — possible shortcut"
    )


def test_each_rule_can_clear_a_class() -> None:
    t = Thresholds()

    def verdict(*findings: RegionFinding, measured: int = 50) -> object:
        return judge("c", images=measured, measured=measured, findings=findings, thresholds=t, input_size=(32, 32))

    weak = verdict(finding("top-left", "corner", 0.3, 0.09))
    assert weak.status == "clear" and "excess 0.23 < 0.35" in weak.line
    few = verdict(finding("top-left", "corner", 0.9, 0.09, share=0.3))
    assert few.status == "clear" and "only 30% of the images" in few.line
    shared = verdict(finding("spot", "spot", 0.6, 0.1, others=0.5, box=(0.4, 0.4, 0.6, 0.6)))
    assert shared.status == "clear" and "other classes put 50% there too" in shared.line
    alone = verdict(finding("spot", "spot", 0.6, 0.1, others=None))
    assert alone.status == "clear" and "needs other classes" in alone.line
    # A spot follows wherever the class's content usually is: it must hold nearly every image.
    content = verdict(finding("spot", "spot", 0.48, 0.1, share=0.67, others=0.12, box=(0.4, 0.4, 0.6, 0.6)))
    assert (
        content.status == "clear" and "only 67% of the images concentrate there individually, need 80%" in content.line
    )
    spot = verdict(finding("spot", "spot", 0.6, 0.1, others=0.1, box=(0.4, 0.4, 0.6, 0.6)))
    assert spot.status == "shortcut" and "fixed spot at the centre (x 13–19, y 13–19 px of the 32×32 input" in spot.line
    too_few = verdict(finding("top-left", "corner", 0.9, 0.09), measured=3)
    assert too_few.status == "too-few" and "need 5" in too_few.line
    lenient = judge(
        "c",
        images=50,
        measured=50,
        findings=(finding("top-left", "corner", 0.3, 0.09),),
        thresholds=Thresholds(min_excess=0.2),
        input_size=(32, 32),
    )
    assert lenient.status == "shortcut"


@pytest.mark.parametrize("mass", [0.58, 0.59])
def test_the_border_needs_more_mass_than_a_corner(mass: float) -> None:
    v = judge(
        "c",
        images=9,
        measured=9,
        findings=(finding("border", "border", mass, 0.36, box=(0.1, 0.1, 0.9, 0.9)),),
        thresholds=Thresholds(),
        input_size=(32, 32),
    )
    assert (v.status == "shortcut") == (mass > 0.584)
    assert "border (outer 10% of each side, 36% of the area)" in v.line


def test_the_smallest_flagged_region_leads_and_edges_are_worded() -> None:
    corner = (finding("top", "edge", 0.75, 0.3, box=(0.0, 0.0, 1.0, 0.3)), finding("top-left", "corner", 0.6, 0.09))
    v = judge("c", images=20, measured=20, findings=corner, thresholds=Thresholds(), input_size=(32, 32))
    assert v.flagged == ("top", "top-left") and v.lead is not None and v.lead.name == "top-left"
    stripe = (finding("top", "edge", 0.9, 0.3, box=(0.0, 0.0, 1.0, 0.3)), finding("top-left", "corner", 0.3, 0.09))
    v = judge("c", images=20, measured=20, findings=stripe, thresholds=Thresholds(), input_size=(32, 32))
    assert v.flagged == ("top",)
    assert "90% of saliency mass in the top edge (a band 30% of the height deep, 30% of the area)" in v.line


def test_pixel_level_gradient_methods_are_warned_about() -> None:
    from tiny_models import SmallCNN

    import saliscope as ss
    from saliscope.audit.verdicts import method_notes

    model = SmallCNN().eval()
    for explainer in (ss.Gradient(model), ss.GuidedBackprop(model), ss.SmoothGrad(ss.Gradient(model))):
        (note,) = method_notes(explainer)
        assert "thresholds were measured with Grad-CAM" in note and explainer.name in note
    for explainer in (ss.GradCAM(model), ss.Occlusion(model), ss.IntegratedGradients(model)):
        assert method_notes(explainer) == []
