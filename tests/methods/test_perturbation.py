"""Occlusion and RISE: exact values on toy models, a slow reference, seeds, chunking and cost."""

from __future__ import annotations

import math

import pytest
import torch
from perturbation_models import NoGrad, QuadrantEnergy, positive_share
from tiny_models import SmallCNN

import saliscope as ss
from saliscope.core.errors import InputError
from saliscope.core.inference_copy import PROBE_PASSES
from saliscope.methods.perturbation.fill import replacement_image
from saliscope.methods.perturbation.rise import RandomMasks


def image(seed: int = 0, size: int = 16) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def quadrant(size: int = 16) -> torch.Tensor:
    region = torch.zeros(size, size, dtype=torch.bool)
    region[: size // 2, : size // 2] = True
    return region


def slow_occlusion(model, x, k, window, stride, fill):
    """The obvious loop: hide each window in turn, one forward each, average the drops per pixel."""
    (wh, ww), (sh, sw) = window, stride
    h, w = x.shape[-2:]

    def starts(size, win, step):
        s = list(range(0, size - win + 1, step))
        return [*s, size - win] if s[-1] + win < size else s

    total, count = torch.zeros(x.shape[0], h, w, dtype=torch.float64), torch.zeros(h, w, dtype=torch.float64)
    with torch.no_grad():
        clean = model(x)[:, k].double()
        for y0 in starts(h, wh, sh):
            for x0 in starts(w, ww, sw):
                hidden = x.clone()
                hidden[:, :, y0 : y0 + wh, x0 : x0 + ww] = fill[:, :, y0 : y0 + wh, x0 : x0 + ww]
                drop = clean - model(hidden)[:, k].double()
                total[:, y0 : y0 + wh, x0 : x0 + ww] += drop.view(-1, 1, 1)
                count[y0 : y0 + wh, x0 : x0 + ww] += 1
    return (total / count).unsqueeze(1).float()


# -- occlusion -------------------------------------------------------------------------------------


def test_occlusion_of_a_linear_model_is_the_window_average_of_w_times_x(linear, batch):
    # Hiding a window (with zeros) of f = W·x + b drops the score by the sum of W * x over the window;
    # with 2×2 windows at stride 2 every pixel lies in exactly one window.
    e = ss.Occlusion(linear, window=2, stride=2).explain(batch, target=3)
    contribution = (linear.weight_map(3) * batch).sum(1)  # (B, 8, 8)
    expected = contribution.view(3, 4, 2, 4, 2).sum((2, 4))  # per window
    expected = expected.repeat_interleave(2, 1).repeat_interleave(2, 2).unsqueeze(1)
    torch.testing.assert_close(e.attributions, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(e.scores, linear(batch)[:, 3].detach())


def test_occlusion_of_a_linear_model_with_overlapping_windows(linear, batch):
    # 3×3 windows at stride 2 on 8 pixels start at 0, 2, 4 and (flush with the edge) 5.
    e = ss.Occlusion(linear, window=3, stride=2).explain(batch, target=0)
    c = (linear.weight_map(0) * batch).sum(1)
    starts = [0, 2, 4, 5]
    total, count = torch.zeros_like(c), torch.zeros(8, 8)
    for y0 in starts:
        for x0 in starts:
            total[:, y0 : y0 + 3, x0 : x0 + 3] += c[:, y0 : y0 + 3, x0 : x0 + 3].sum((1, 2)).view(-1, 1, 1)
            count[y0 : y0 + 3, x0 : x0 + 3] += 1
    torch.testing.assert_close(e.attributions, (total / count).unsqueeze(1), rtol=1e-5, atol=1e-5)
    assert e.extras["window_drops"].shape == (3, 4, 4)


@pytest.mark.parametrize("replacement", ["constant", "mean", "blur"])
def test_occlusion_matches_the_slow_loop(cnn, replacement):
    x = image(1, size=12)
    explainer = ss.Occlusion(cnn, window=(4, 3), stride=(3, 2), replacement=replacement, value=0.5, blur_sigma=2.0)
    e = explainer.explain(x, target=2)
    fill = replacement_image(x, cnn, replacement, value=0.5, blur_sigma=2.0)
    expected = slow_occlusion(cnn, x, 2, (4, 3), (3, 2), fill)
    torch.testing.assert_close(e.attributions, expected, rtol=1e-4, atol=1e-5)
    assert e.params["replacement"] == replacement


def test_occlusion_localises_the_quadrant_the_model_reads():
    # A window straddling the quadrant's edge smears its drop over its outside half: the resolution
    # of occlusion is the window, so the image is large against it.
    e = ss.Occlusion(QuadrantEnergy(), window=4, stride=2).explain(image(size=32), target=0)
    assert positive_share(e.attributions, quadrant(32)) >= 0.9
    assert bool((e.attributions[..., 20:, :] == 0).all())  # windows away from the quadrant change nothing


def test_occlusion_cost_counts_one_clean_pass_and_one_per_window(cnn, batch):
    e = ss.Occlusion(cnn, window=4, stride=2).explain(batch, target=1)  # 3 × 3 windows on 8 × 8
    assert e.cost.forward_passes == 3 * (1 + 9) and e.cost.backward_passes == 0
    predicted = ss.Occlusion(cnn, window=4, stride=2).explain(batch)  # + one clean pass to find the class
    assert predicted.cost.forward_passes == 3 * (1 + 9) + 3


def test_occlusion_default_window_scales_with_the_image(cnn):
    assert ss.Occlusion(cnn).geometry(224, 224) == ((16, 16), (8, 8))
    assert ss.Occlusion(cnn).geometry(8, 8) == ((1, 1), (1, 1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"window": 9}, "larger than the image"),
        ({"window": 0}, "window must be a positive int"),
        ({"stride": (2, 0)}, "stride must be"),
        ({"replacement": "noise"}, "unknown replacement"),
        ({"replacement": "blur", "blur_sigma": 0}, "blur_sigma"),
    ],
)
def test_occlusion_bad_parameters_are_clear_errors(cnn, batch, kwargs, match):
    with pytest.raises(InputError, match=match):
        ss.Occlusion(cnn, **kwargs).explain(batch, target=0)


# -- RISE ------------------------------------------------------------------------------------------


def test_rise_is_the_papers_formula_when_not_centred(cnn):
    x = image(2, size=10)
    e = ss.RISE(cnn, n_masks=40, grid=3, p=0.3, centre=False, seed=5).explain(x, target=1)
    masks = RandomMasks(40, 3, 0.3, (10, 10), seed=5)(torch.arange(40))  # (N, 1, H, W)
    with torch.no_grad():
        scores = torch.stack([cnn(x[i : i + 1] * masks)[:, 1] for i in range(2)])  # (B, N), fill 0
    expected = torch.einsum("bn,nchw->bchw", scores, masks) / (40 * 0.3)
    torch.testing.assert_close(e.attributions, expected, rtol=1e-4, atol=1e-5)
    # centring subtracts the mean score times the mask coverage, nothing else
    centred = ss.RISE(cnn, n_masks=40, grid=3, p=0.3, seed=5).explain(x, target=1)
    coverage = masks.sum(0) / (40 * 0.3)
    torch.testing.assert_close(
        centred.attributions, expected - scores.mean(1).view(-1, 1, 1, 1) * coverage, rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(centred.extras["mean_score"], scores.mean(1))


def test_rise_masks_are_smooth_shifted_and_kept_with_probability_p():
    masks = RandomMasks(400, 4, 0.5, (32, 32), seed=0)(torch.arange(400))
    assert masks.shape == (400, 1, 32, 32) and float(masks.min()) >= 0 and float(masks.max()) <= 1
    assert abs(float(masks.mean()) - 0.5) < 0.03
    assert not torch.equal(masks[0], masks[1])


def test_rise_localises_the_quadrant_the_model_reads():
    # RISE cannot be sharper than its masks: a bilinearly upsampled cell (here 4 px) blurs the map by
    # about one cell, so the quadrant grown by one cell must hold the positive mass.
    e = ss.RISE(QuadrantEnergy(), n_masks=3000, grid=6, seed=0).explain(image(size=24), target=0)
    grown = torch.zeros(24, 24, dtype=torch.bool)
    grown[:16, :16] = True
    assert positive_share(e.attributions, grown) >= 0.9
    assert positive_share(e.attributions, quadrant(24)) >= 0.75


def test_rise_seed_gives_identical_maps_and_is_recorded(cnn, batch):
    a = ss.RISE(cnn, n_masks=30, seed=7).explain(batch, target=0)
    b = ss.RISE(cnn, n_masks=30, seed=7).explain(batch, target=0)
    c = ss.RISE(cnn, n_masks=30, seed=8).explain(batch, target=0)
    assert torch.equal(a.attributions, b.attributions) and not torch.equal(a.attributions, c.attributions)
    drawn = ss.RISE(cnn, n_masks=30).explain(batch, target=0)
    again = ss.RISE(cnn, n_masks=30, seed=drawn.params["seed"]).explain(batch, target=0)
    assert torch.equal(drawn.attributions, again.attributions)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_masks": 0}, "n_masks must be an integer >= 1"),
        ({"p": 1.0}, "strictly between 0 and 1"),
        ({"grid": 9}, "finer than the 8×8 image"),
    ],
)
def test_rise_bad_parameters_are_clear_errors(cnn, batch, kwargs, match):
    with pytest.raises(InputError, match=match):
        ss.RISE(cnn, **kwargs).explain(batch, target=0)


# -- shared machinery ------------------------------------------------------------------------------

BUILDERS = {
    "occlusion": lambda m, **kw: ss.Occlusion(m, window=3, stride=2, **kw),
    "rise": lambda m, **kw: ss.RISE(m, n_masks=25, grid=3, seed=1, **kw),
    "lime": lambda m, **kw: ss.LIME(m, n_samples=25, n_superpixels=8, seed=1, **kw),
    "kernel-shap": lambda m, **kw: ss.KernelSHAP(m, n_samples=25, n_superpixels=8, seed=1, **kw),
}
ROWS = {"occlusion": 1 + 16, "rise": 25, "lime": 25, "kernel-shap": 25}
PROBE = PROBE_PASSES  # 16 or more rows per image run on the folded copy, checked against the model on the probe


@pytest.mark.parametrize("name", BUILDERS)
def test_chunk_size_one_equals_automatic_chunks(name, smooth_cnn, batch):
    auto = BUILDERS[name](smooth_cnn).explain(batch, target=2)
    one = BUILDERS[name](smooth_cnn, chunk_size=1).explain(batch, target=2)
    torch.testing.assert_close(one.attributions, auto.attributions, rtol=1e-4, atol=1e-5)
    assert one.cost.batches == 3 * ROWS[name] and auto.cost.batches < one.cost.batches


@pytest.mark.parametrize("name", BUILDERS)
def test_forward_passes_only_counted_exactly(name, cnn, batch):
    e = BUILDERS[name](NoGrad(cnn)).explain(batch, target=[0, 1, 2])  # the model asserts no autograd
    assert e.cost.forward_passes == 3 * ROWS[name] + PROBE and e.cost.backward_passes == 0


@pytest.mark.parametrize("name", BUILDERS)
def test_several_targets_share_the_forward_passes(name, cnn, batch):
    both = BUILDERS[name](cnn).explain_each(batch, [0, 3])
    alone = [BUILDERS[name](cnn).explain(batch, target=k) for k in (0, 3)]
    for shared, single in zip(both, alone, strict=True):
        torch.testing.assert_close(shared.attributions, single.attributions, rtol=1e-5, atol=1e-6)
    assert both[0].cost.forward_passes == 3 * ROWS[name] + PROBE


@pytest.mark.parametrize("name", BUILDERS)
def test_one_channel_maps_at_input_resolution_on_a_wider_image(name):
    x = torch.randn(2, 3, 10, 14, generator=torch.Generator().manual_seed(4))
    model = SmallCNN().eval()
    e = BUILDERS[name](model).explain(x, target=1)
    assert e.attributions.shape == (2, 1, 10, 14) and e.attributions.dtype == torch.float32
    # values too: on a non-square image each image of the batch is explained as it would be alone
    for i in range(2):
        alone = BUILDERS[name](model).explain(x[i : i + 1], target=1).attributions
        torch.testing.assert_close(e.attributions[i : i + 1], alone, rtol=1e-4, atol=1e-6)


def test_forward_only_work_is_chunked_by_its_own_probe(cnn, batch):
    explainer = ss.Occlusion(cnn, window=2, stride=1, memory_budget=64 * 1024)
    e = explainer.explain(batch, target=0)
    key = explainer.chunk_key(batch)
    assert key[0] == "forward" and key != ss.Gradient(cnn).chunk_key(batch)
    rows = explainer.chunker.rows_per_chunk(key, batch.device)
    assert rows is not None and 1 < rows < 3 * 50
    assert e.cost.batches == 1 + PROBE + math.ceil((3 * 50 - 1) / rows)  # the clean pass, the probe, the chunks


def test_progress_bar_only_when_asked(cnn, batch, capsys):
    ss.RISE(cnn, n_masks=20, seed=0, chunk_size=4).explain(batch, target=0)
    assert capsys.readouterr().err == ""
    ss.RISE(cnn, n_masks=20, seed=0, chunk_size=4, progress=True).explain(batch, target=0)
    assert "rise" in capsys.readouterr().err
