"""Edges of the metrics: the batched ROAD imputation against a per-step solve, ROAD's percentages checked up
front, the normalised AUC refused where the clean score can be negative, and measured passes shared."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from faithfulness_models import BlockReader, block_image, block_mask
from robustness_models import LinearImage
from torch import nn

import saliscope as ss
from saliscope import metrics
from saliscope.core.errors import InputError
from saliscope.metrics.imputation import NEIGHBOURS, dissection_rank, impute
from saliscope.trust import evaluate


def per_step_imputation(image: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """The imputation as ROAD's reference code does it: one scipy sparse solve for one image, equation by
    equation in plain loops."""
    from scipy.sparse import lil_matrix
    from scipy.sparse.linalg import spsolve

    c, h, w = image.shape
    unknown = [(r, q) for r in range(h) for q in range(w) if bool(removed[r, q])]
    index = {p: i for i, p in enumerate(unknown)}
    a = lil_matrix((len(unknown), len(unknown)))
    b = np.zeros((len(unknown), c))
    values = image.double().numpy()
    for i, (r, q) in enumerate(unknown):
        for dr, dq, weight in NEIGHBOURS:
            nr, nq = r + dr, q + dq
            if 0 <= nr < h and 0 <= nq < w:
                a[i, i] += weight
                if (nr, nq) in index:
                    a[i, index[(nr, nq)]] -= weight
                else:
                    b[i] += weight * values[:, nr, nq]
    solved = spsolve(a.tocsc(), b).reshape(len(unknown), c)
    out = values.copy()
    for i, (r, q) in enumerate(unknown):
        out[:, r, q] = solved[i]
    return torch.from_numpy(out)


def test_the_batched_imputation_equals_a_per_step_solve():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(5, 3, 23, 31, generator=g, dtype=torch.float64)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 1, 4, 5, generator=g), size=(23, 31), mode="bilinear")
    order = smooth.flatten().argsort(descending=True)
    removed = torch.zeros(5, 23 * 31, dtype=torch.bool)
    for k, share in enumerate((0.1, 0.5, 0.9)):  # compact regions, growing: ROAD's MoRF steps
        removed[k, order[: int(share * 23 * 31)]] = True
    removed[3] = torch.rand(23 * 31, generator=g) < 0.6  # scattered pixels: a pixel-noise map's steps
    removed[4, :] = True
    removed[4, 23 * 31 // 2] = False  # everything but one pixel: one region, filled from one known value
    removed = removed.view(5, 23, 31)
    batched = impute(images, removed)
    for k in range(5):
        reference = per_step_imputation(images[k], removed[k])
        torch.testing.assert_close(batched[k], reference, rtol=0, atol=1e-6)
    assert torch.equal(batched[:, :, ~removed[0]][0], images[0][:, ~removed[0]])  # kept pixels untouched
    # Noise lands on removed pixels only, drawn per image from its own generator, as the per-step code did.
    gens = [torch.Generator().manual_seed(k) for k in range(5)]
    noisy = impute(images, removed, noise=0.5, generators=gens)
    for k in range(5):
        z = torch.randn((3, 23, 31), generator=torch.Generator().manual_seed(k), dtype=torch.float64)
        expected = torch.where(removed[k], batched[k] + 0.5 * z, batched[k])
        torch.testing.assert_close(noisy[k], expected, rtol=0, atol=1e-12)
    # Images are factorised on as many threads as torch may use: one thread gives the very same values.
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(impute(images, removed), batched)
    finally:
        torch.set_num_threads(threads)


def test_the_dissection_order_is_a_permutation_with_separators_last():
    rank = dissection_rank(9, 12)
    assert sorted(rank.tolist()) == list(range(108))
    # The first cut halves the longer side (columns 0..11 at column 5): it is eliminated after both halves.
    cut = rank.reshape(9, 12)[:, 5]
    assert int(cut.min()) > int(np.delete(rank.reshape(9, 12), 5, axis=1).max()) - 9


def test_road_refuses_a_percentage_that_removes_every_pixel_before_running_the_model():
    class Untouchable(nn.Module):
        def forward(self, x):
            raise AssertionError("the model ran")

    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(InputError, match=r"99\.5% of a 8×8 image removes all of its 64 pixels.*at most 98\.43"):
        metrics.road(Untouchable(), x, torch.rand(1, 1, 8, 8), target=0, percentages=(50, 99.5))
    # The largest percentage it names does run: 63 of the 64 pixels go, one is left to impute from.
    fine = metrics.road(LinearImage().eval(), x, torch.rand(1, 1, 8, 8), target=0, percentages=(98.43,))
    assert fine.params["percentages"] == [98.43] and fine.morf.shape == (1, 1)


class NegativeLogit(nn.Module):
    """Class 0's logit is ``mean(block) - 0.6``: negative on the block image (clean −0.035 ... as measured)."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.reader, self.offset = BlockReader(), offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.reader(x)
        return torch.stack([out[:, 0] - self.offset, out[:, 1]], dim=1)


def test_a_normalised_auc_is_refused_where_the_clean_score_can_be_negative():
    x, good = block_image(1), block_mask(1)
    model = NegativeLogit(1.035).eval()  # clean logit 1 - 1.035 = -0.035
    good_curve = metrics.deletion(model, x, good, target=0, space="logit", replacement="constant")
    bad_curve = metrics.deletion(model, x, -good, target=0, space="logit", replacement="constant")
    assert float(good_curve.clean_scores[0]) == pytest.approx(-0.035, abs=1e-6)
    # The raw areas rank the maps right: the good map's curve falls first (lower is better).
    assert float(good_curve.auc[0]) < float(bad_curve.auc[0])
    # Divided by the negative clean logit they would rank them the wrong way round, and blow up: refused.
    ratio = good_curve.auc / good_curve.clean_scores
    assert float(ratio[0]) > float((bad_curve.auc / bad_curve.clean_scores)[0])
    with pytest.raises(InputError, match=r"'logit' space.*use \.auc"):
        _ = good_curve.normalized_auc
    # In probability space the clean score is positive by construction: the ratio keeps the ranking.
    good_p = metrics.deletion(model, x, good, target=0, replacement="constant")
    bad_p = metrics.deletion(model, x, -good, target=0, replacement="constant")
    assert float(good_p.normalized_auc[0]) < float(bad_p.normalized_auc[0])
    torch.testing.assert_close(good_p.normalized_auc, good_p.auc / good_p.clean_scores)


def test_evaluate_reads_sensitivity_twice_from_one_measurement_and_passes_the_clean_map_on():
    model = LinearImage(h=12, w=12).eval()
    x = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    explainer = ss.SmoothGrad(ss.Gradient(model), n_samples=3, seed=0)
    e = explainer.explain(x, 1)
    found = evaluate(model, x, explainer, e, metrics=["max-sensitivity", "avg-sensitivity", "consistency"], seed=0)
    alone_max = metrics.max_sensitivity(explainer, x, e.target, n_samples=5, seed=0)
    alone_avg = metrics.avg_sensitivity(explainer, x, e.target, n_samples=5, seed=0)
    torch.testing.assert_close(found["max-sensitivity"].sensitivity, alone_max.sensitivity)
    torch.testing.assert_close(found["avg-sensitivity"].sensitivity, alone_avg.sensitivity)
    assert found["avg-sensitivity"].statistic == "average" and found["avg-sensitivity"].cost.backward_passes == 0
    alone = metrics.consistency(explainer, x, e.target, seed=0)
    torch.testing.assert_close(found["consistency"].spearman, alone.spearman)
    # The clean map was handed on: consistency ran only its altered copies (4 transforms × 3 samples).
    assert found["consistency"].cost.backward_passes == 4 * 3
