"""LIME and KernelSHAP: exact recovery on additive models, Shapley values, superpixels, seeds, batches."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from perturbation_models import Interacting, NoGrad, RegionReader, SuperpixelAdditive, positive_share
from torch import nn

import saliscope as ss
from saliscope.core.errors import InputError
from saliscope.core.inference_copy import PROBE_PASSES
from saliscope.methods.perturbation.coalitions import draw_coalitions, lime_size_law, shapley_size_law
from saliscope.methods.perturbation.superpixels import superpixels

H = W = 12


def blocks(n_rows: int = 2, n_cols: int = 3) -> torch.Tensor:
    """(H, W) labels: a grid of n_rows × n_cols rectangles."""
    rows = torch.arange(H) * n_rows // H
    cols = torch.arange(W) * n_cols // W
    return rows.view(-1, 1) * n_cols + cols.view(1, -1)


def fixed(labels: torch.Tensor):
    return lambda x: labels


def images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, H, W, generator=torch.Generator().manual_seed(seed))


def coalition_scores(model, x, labels):
    """Every coalition ``(2^S, S)`` of the superpixels and the scores ``(B, 2^S)`` of class 0 (hidden = 0)."""
    s = int(labels.max()) + 1
    z = torch.tensor(list(itertools.product((0, 1), repeat=s)), dtype=torch.float64)
    with torch.no_grad():
        scores = torch.stack([model(x * row.to(x.dtype)[labels])[:, 0].double() for row in z], dim=1)
    return z, scores


def exact_shapley(model, x, labels):
    """Shapley values of the superpixels by enumerating every coalition (hidden = 0)."""
    coalitions, scores = coalition_scores(model, x, labels)
    s = coalitions.shape[1]
    values = {tuple(int(v) for v in row): scores[:, i] for i, row in enumerate(coalitions)}
    phi = torch.zeros(x.shape[0], s, dtype=torch.float64)
    for z, v in values.items():
        for k in range(s):
            if z[k]:
                size = sum(z) - 1
                weight = math.factorial(size) * math.factorial(s - size - 1) / math.factorial(s)
                phi[:, k] += weight * (v - values[(*z[:k], 0, *z[k + 1 :])])
    return phi


def lime_limit(model, x, labels, kernel_width=0.25):
    """What LIME (alpha 0) converges to: its weighted least squares over every coalition, each as likely
    (its sampler keeps each superpixel with probability 1/2), weighed by its kernel."""
    z, scores = coalition_scores(model, x, labels)
    # LIME's kernel written out (not the library's lime_weights): exp(-d²/w²), d the cosine distance to all-ones.
    cosine = (z.sum(1) / z.shape[1]).sqrt()
    root = torch.exp(-((1 - cosine) ** 2) / kernel_width**2).sqrt().view(-1, 1)
    design = root * torch.cat([torch.ones(len(z), 1, dtype=torch.float64), z], dim=1)
    return torch.linalg.lstsq(design, root * scores.T).solution[1:].T


class HighOrder(SuperpixelAdditive):
    """Interactions of order 3, 4 and up to 6 (a ReLU of the sum) on top of additive and pairwise terms.

    Paired sampling alone gives the exact Shapley values of any game of order <= 2 (as ``Interacting``
    nearly is), whatever the size law; these terms are only shared right with the Shapley kernel's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.region_means(x)
        score = (
            m @ self.a
            + 2 * m[:, 0] * m[:, 1] * m[:, 2]
            - 1.5 * m[:, 0] * m[:, 3] * m[:, 4] * m[:, 5]
            + 3 * torch.relu(m.sum(1) - 1)
            - m[:, 2] * m[:, 5]
        )
        return torch.stack([score, -score], dim=1)


class AloneNotInCompany(SuperpixelAdditive):
    """``m_0 (3 - sum of the other means)``: superpixel 0 helps on an empty image and hurts on a full one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.region_means(x)
        score = m[:, 0] * (3 - m[:, 1:].sum(1))
        return torch.stack([score, -score], dim=1)


def region_image(values: torch.Tensor, labels: torch.Tensor, noise: float = 0.1) -> torch.Tensor:
    """(B, 3, H, W): superpixel k of image b at ``values[b, k]``, plus a little seeded noise."""
    x = values[:, labels].unsqueeze(1).expand(-1, 3, -1, -1)
    return x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))


# -- exact recovery --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, kwargs", [(ss.KernelSHAP, {}), (ss.LIME, {"alpha": 0.0})])
def test_additive_model_gets_its_superpixel_contributions_back(cls, kwargs):
    labels = blocks()
    a = torch.tensor([3.0, -2.0, 0.5, 1.5, -1.0, 2.5])
    model = SuperpixelAdditive(labels, a).eval()
    x = images()
    e = cls(model, n_samples=60, superpixels=fixed(labels), seed=0, **kwargs).explain(x, target=0)
    contributions = model.region_means(x) * a  # hiding superpixel k (with 0) removes exactly this
    torch.testing.assert_close(e.extras["coefficients"], contributions, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        e.attributions[:, 0], contributions.gather(1, labels.flatten().expand(2, -1)).view(2, H, W)
    )


def test_lime_ridge_shrinks_towards_zero_but_keeps_the_contributions_order():
    labels = blocks()
    a = torch.tensor([3.0, -2.0, 0.5, 1.5, -1.0, 2.5])
    model = SuperpixelAdditive(labels, a).eval()
    x = images()
    coef = ss.LIME(model, n_samples=200, superpixels=fixed(labels), seed=0).explain(x, target=0).extras["coefficients"]
    truth = model.region_means(x) * a
    assert float(coef.norm()) < float(truth.norm())
    assert float(torch.corrcoef(torch.stack([coef.flatten(), truth.flatten()]))[0, 1]) > 0.99


def test_kernel_shap_approaches_the_exact_shapley_values_of_an_interacting_model():
    labels = blocks(2, 3)
    model = Interacting(labels, torch.tensor([1.0, -0.5, 2.0, 0.3, -1.5, 0.8])).eval()
    x = images()
    phi = exact_shapley(model, x, labels)
    e = ss.KernelSHAP(model, n_samples=2000, superpixels=fixed(labels), seed=0).explain(x, target=0)
    coef = e.extras["coefficients"].double()
    torch.testing.assert_close(coef.sum(1), phi.sum(1), rtol=1e-5, atol=1e-5)  # efficiency: exact
    assert float((coef - phi).abs().max()) < 0.05 * float(phi.abs().max())


def high_order_case() -> tuple[torch.Tensor, nn.Module, torch.Tensor]:
    """Superpixel labels, a :class:`HighOrder` model over them, and two images of known region values."""
    labels = blocks(2, 3)
    model = HighOrder(labels, torch.tensor([1.0, -0.5, 2.0, 0.3, -1.5, 0.8])).eval()
    x = region_image(torch.tensor([[1.0, -0.8, 1.5, 0.7, 1.2, -1.1], [0.5, 1.3, -0.9, 1.1, 0.8, 1.4]]), labels)
    return labels, model, x


def test_kernel_shap_converges_to_the_exact_shapley_values_of_higher_order_interactions():
    # The size law matters here: a uniform one misses by ~3% of the largest value, LIME's binomial one by ~8%.
    labels, model, x = high_order_case()
    phi = exact_shapley(model, x, labels)
    e = ss.KernelSHAP(model, n_samples=20000, superpixels=fixed(labels), seed=0).explain(x, target=0)
    coef = e.extras["coefficients"].double()
    torch.testing.assert_close(coef.sum(1), phi.sum(1), rtol=1e-5, atol=1e-4)
    assert float((coef - phi).abs().max()) < 0.015 * float(phi.abs().max())


def test_lime_converges_to_its_weighted_least_squares_over_every_coalition():
    labels, model, x = high_order_case()
    limit = lime_limit(model, x, labels)
    coef = ss.LIME(model, n_samples=20000, superpixels=fixed(labels), alpha=0.0, seed=0).explain(x, target=0)
    assert float((coef.extras["coefficients"].double() - limit).abs().max()) < 0.02 * float(limit.abs().max())


def test_lime_and_kernel_shap_can_rightly_disagree_in_sign():
    # Superpixel 0 adds 3 alone and loses 1 per other superpixel present: its Shapley value averages all
    # coalition sizes (+0.5); LIME's sampler and kernel look at half-to-fully kept images (-0.485).
    labels = blocks(2, 3)
    model = AloneNotInCompany(labels, torch.zeros(6)).eval()
    x = torch.ones(1, 3, H, W)
    phi, limit = exact_shapley(model, x, labels), lime_limit(model, x, labels)
    torch.testing.assert_close(phi[0], torch.tensor([0.5] + [-0.5] * 5, dtype=torch.float64), rtol=0, atol=1e-5)
    assert float(limit[0, 0]) == pytest.approx(-0.485, abs=1e-3)
    shap = ss.KernelSHAP(model, n_samples=2000, superpixels=fixed(labels), seed=0).explain(x, target=0)
    lime = ss.LIME(model, n_samples=2000, superpixels=fixed(labels), alpha=0.0, seed=0).explain(x, target=0)
    assert float(shap.extras["coefficients"][0, 0]) == pytest.approx(0.5, abs=0.05)
    assert float(lime.extras["coefficients"][0, 0]) == pytest.approx(-0.485, abs=0.05)
    # Every superpixel, not only the one whose sign differs.
    torch.testing.assert_close(shap.extras["coefficients"].double(), phi, rtol=0, atol=1e-5)
    torch.testing.assert_close(lime.extras["coefficients"].double(), limit, rtol=0, atol=0.08)


# -- localisation ----------------------------------------------------------------------------------


def test_surrogates_find_the_superpixel_region_a_model_reads():
    # A model that reads one SLIC superpixel of a natural image (the one under the cat's eye) and nothing else.
    from skimage import data
    from skimage.transform import resize

    cat = torch.from_numpy(resize(data.chelsea(), (40, 60), anti_aliasing=True)).permute(2, 0, 1).float()
    x = ((cat - 0.45) / 0.25).unsqueeze(0)
    labels, _ = superpixels(x, "slic", n_segments=30)
    region = labels[0] == labels[0, 20, 30]
    model = RegionReader(region).eval()
    for cls in (ss.LIME, ss.KernelSHAP):
        e = cls(model, n_samples=200, n_superpixels=30, seed=0).explain(x, target=0)
        assert positive_share(e.attributions, region) >= 0.9, cls.name


# -- superpixels -----------------------------------------------------------------------------------


def test_superpixels_are_dense_labels_per_image():
    x = images(2)
    for how in ("slic", "quickshift", "grid"):
        labels, counts = superpixels(x, how, n_segments=9)
        assert labels.shape == (2, H, W) and labels.dtype == torch.long
        for i in range(2):
            assert int(labels[i].max()) + 1 == counts[i] == len(labels[i].unique())
    grid, counts = superpixels(x, "grid", n_segments=9)
    assert counts == [9, 9] and torch.equal(grid[0], grid[1])


def test_superpixels_are_the_same_in_float32_and_float64():
    x = images(1)
    assert torch.equal(superpixels(x)[0], superpixels(x.double())[0])


def test_a_batch_with_different_superpixel_counts_equals_each_image_alone(cnn):
    x = torch.cat([images(1, seed=3), torch.zeros(1, 3, H, W)])  # a flat image gets fewer superpixels
    x = torch.nn.functional.interpolate(x, size=(8, 8))
    counts = superpixels(x, "slic", n_segments=16)[1]
    assert counts[0] != counts[1]
    for cls in (ss.LIME, ss.KernelSHAP):
        together = cls(cnn, n_samples=40, n_superpixels=16, seed=2).explain(x, target=[1, 2])
        for i, k in enumerate((1, 2)):
            alone = cls(cnn, n_samples=40, n_superpixels=16, seed=2).explain(x[i : i + 1], target=k)
            torch.testing.assert_close(together.attributions[i : i + 1], alone.attributions, rtol=1e-4, atol=1e-6)


# -- sampler ---------------------------------------------------------------------------------------


def test_size_laws():
    torch.testing.assert_close(lime_size_law(4), torch.tensor([1, 4, 6, 4, 1], dtype=torch.float64) / 16)
    law = shapley_size_law(4)  # (S-1)/(k(S-k)): 3/3, 3/4, 3/3 for k = 1, 2, 3
    torch.testing.assert_close(law, torch.tensor([0, 1, 0.75, 1, 0], dtype=torch.float64) / 2.75)


def test_paired_coalitions_are_complements_and_seeded():
    z = draw_coalitions(10, 7, torch.Generator().manual_seed(0), shapley_size_law(7), paired=True)
    assert torch.equal(z[1::2], 1 - z[0::2])
    assert bool(((z.sum(1) > 0) & (z.sum(1) < 7)).all())
    again = draw_coalitions(10, 7, torch.Generator().manual_seed(0), shapley_size_law(7), paired=True)
    assert torch.equal(z, again)


# -- parameters and cost ---------------------------------------------------------------------------


def test_seeded_runs_are_identical_and_the_drawn_seed_is_recorded(cnn, batch):
    a = ss.LIME(cnn, n_samples=30, n_superpixels=8, seed=4).explain(batch, target=0)
    b = ss.LIME(cnn, n_samples=30, n_superpixels=8, seed=4).explain(batch, target=0)
    assert torch.equal(a.attributions, b.attributions) and a.params["seed"] == 4
    drawn = ss.KernelSHAP(cnn, n_samples=30, n_superpixels=8).explain(batch, target=0)
    again = ss.KernelSHAP(cnn, n_samples=30, n_superpixels=8, seed=drawn.params["seed"]).explain(batch, target=0)
    assert torch.equal(drawn.attributions, again.attributions)


def test_extras_and_cost(cnn, batch):
    e = ss.KernelSHAP(NoGrad(cnn), n_samples=30, superpixels="grid", n_superpixels=4).explain(batch, target=1)
    probe = PROBE_PASSES  # 30 rows per image run on the folded copy, checked against the model on the probe
    assert e.cost.forward_passes == 3 * 30 + probe and e.cost.backward_passes == 0
    assert e.extras["superpixels"].shape == (3, 1, 8, 8) and e.extras["coefficients"].shape == (3, 4)
    with torch.no_grad():
        none, full = cnn(torch.zeros_like(batch))[:, 1], cnn(batch)[:, 1]
    torch.testing.assert_close(e.extras["intercept"], none)
    torch.testing.assert_close(e.extras["coefficients"].sum(1), full - none, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (ss.LIME, {"n_samples": 0}, "n_samples must be an integer >= 1"),
        (ss.KernelSHAP, {"n_samples": 1}, "n_samples must be an integer >= 2"),
        (ss.LIME, {"superpixels": "watershed"}, "unknown superpixel method"),
        (ss.LIME, {"alpha": -1.0}, "alpha must be >= 0"),
        (ss.LIME, {"kernel_width": 0.0}, "kernel_width must be > 0"),
        (ss.KernelSHAP, {"n_superpixels": 0}, "n_superpixels must be"),
    ],
)
def test_bad_parameters_are_clear_errors(cnn, cls, kwargs, match):
    with pytest.raises(InputError, match=match):
        cls(cnn, **kwargs)


def test_bad_superpixel_functions_and_quickshift_on_grey_are_clear_errors(cnn, batch):
    with pytest.raises(InputError, match="return integer labels"):
        ss.LIME(cnn, n_samples=5, superpixels=lambda x: torch.zeros(4, 4, dtype=torch.long)).explain(batch, target=0)
    grey = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), cnn).eval()
    with pytest.raises(InputError, match="quickshift needs 3-channel"):
        ss.LIME(grey, n_samples=5, superpixels="quickshift").explain(batch[:, :1], target=0)
