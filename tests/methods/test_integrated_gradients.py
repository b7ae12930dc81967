import pytest
import torch

import saliscope as ss
from saliscope.core.errors import MethodError
from saliscope.methods import Blur, Given, UniformNoise, Zero, quadrature
from saliscope.methods.quadrature import RULES


@pytest.mark.parametrize("rule", RULES)
def test_ig_on_linear_model_with_zero_baseline_is_x_times_w(linear, batch, rule):
    e = ss.IntegratedGradients(linear, n_steps=5, rule=rule, baseline="zero").explain(batch, target=3)
    torch.testing.assert_close(e.attributions, batch * linear.weight_map(3))
    assert e.completeness_gap.abs().max() < 1e-4


@pytest.mark.parametrize("rule", RULES)
def test_quadrature_weights_sum_to_one_and_nodes_in_unit_interval(rule):
    alphas, weights = quadrature(rule, 7)
    assert abs(float(weights.sum()) - 1.0) < 1e-12
    assert float(alphas.min()) >= 0 and float(alphas.max()) <= 1


def test_gauss_legendre_is_exact_for_polynomials_of_degree_2n_minus_1():
    alphas, weights = quadrature("gauss-legendre", 4)
    for degree in range(8):  # integral of a^d over [0, 1] is 1 / (d + 1)
        assert float((weights * alphas**degree).sum()) == pytest.approx(1 / (degree + 1), abs=1e-12)


def test_completeness_gap_is_small_at_64_steps_and_shrinks_with_steps(smooth_cnn, batch):
    gaps = {}
    for steps in (4, 16, 64):
        e = ss.IntegratedGradients(smooth_cnn, n_steps=steps, rule="riemann-trapezoid").explain(batch, target=0)
        gaps[steps] = float(e.completeness_gap.abs().max())
    assert gaps[64] < 1e-3
    assert gaps[4] > gaps[16] > gaps[64]
    gl = ss.IntegratedGradients(smooth_cnn, n_steps=64).explain(batch, target=0)
    assert float(gl.completeness_gap.abs().max()) < 1e-3


def test_completeness_gap_is_reported_against_the_real_scores(smooth_cnn, batch):
    e = ss.IntegratedGradients(smooth_cnn, n_steps=64, baseline="zero").explain(batch, target=2)
    expected_delta = smooth_cnn(batch)[:, 2] - smooth_cnn(torch.zeros_like(batch))[:, 2]
    torch.testing.assert_close(e.extras["input_scores"] - e.extras["baseline_scores"], expected_delta.detach())
    torch.testing.assert_close(e.completeness_gap, e.attributions.flatten(1).sum(1) - expected_delta.detach())


def _slow_ig(model, x, baseline, target, rule, steps):
    """A loop over samples and steps, the way the paper writes it."""
    alphas, weights = quadrature(rule, steps)
    out = torch.zeros_like(x)
    for i in range(len(x)):
        for a, w in zip(alphas.tolist(), weights.tolist(), strict=True):
            p = (baseline[i] + a * (x[i] - baseline[i])).unsqueeze(0).requires_grad_()
            model(p)[0, target].backward()
            out[i] += w * p.grad[0]
    return (x - baseline) * out


@pytest.mark.parametrize("chunk_size", [None, 1, 5, 1000])
def test_ig_matches_the_slow_loop_whatever_the_chunking(cnn, batch, chunk_size):
    baseline = torch.full_like(batch, -0.3)
    fast = ss.IntegratedGradients(cnn, n_steps=6, baseline=baseline, rule="riemann-middle", chunk_size=chunk_size)
    slow = _slow_ig(cnn, batch, baseline, 1, "riemann-middle", 6)
    torch.testing.assert_close(fast.explain(batch, target=1).attributions, slow, rtol=1e-4, atol=1e-5)


def test_baselines(cnn, batch):
    torch.testing.assert_close(Zero()(batch, cnn), torch.zeros_like(batch))
    blurred = Blur(sigma=2.0)(batch, cnn)
    assert blurred.shape == batch.shape and blurred.std() < batch.std()
    u1, u2 = UniformNoise(seed=3)(batch, cnn), UniformNoise(seed=3)(batch, cnn)
    torch.testing.assert_close(u1, u2)
    assert bool((u1 >= batch.amin((2, 3), keepdim=True)).all() and (u1 <= batch.amax((2, 3), keepdim=True)).all())
    torch.testing.assert_close(Given(torch.ones(3, 8, 8))(batch, cnn), torch.ones_like(batch))
    with pytest.raises(ss.SaliscopeError, match="baseline"):
        Given(torch.ones(2, 8, 8))(batch, cnn)


@pytest.mark.parametrize(
    ("shape", "sigma", "kernel"),
    [((2, 3, 40, 33), 2.0, 13), ((1, 3, 224, 224), 10.0, 61), ((3, 1, 8, 12), 10.0, 7)],  # ±3 sigma; capped at 8 px
)
def test_blur_is_torchvisions_gaussian_blur_with_the_border_reflected(shape, sigma, kernel):
    from torchvision.transforms.functional import gaussian_blur

    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    assert Blur(sigma).kernel_size(min(shape[-2:])) == kernel
    torch.testing.assert_close(Blur(sigma)(x, None), gaussian_blur(x, [kernel, kernel], [sigma, sigma]))


def test_blur_spreads_one_bright_pixel_into_the_normalised_gaussian():
    x = torch.zeros(1, 1, 41, 41)
    x[0, 0, 20, 20] = 1.0
    out = Blur(sigma=2.0)(x, None)[0, 0]
    r = torch.arange(-6, 7, dtype=torch.float64)
    g = torch.exp(-0.5 * (r / 2.0) ** 2)
    expected = torch.outer(g, g) / g.sum() ** 2  # the 13-px window that sigma 2 uses
    torch.testing.assert_close(out[14:27, 14:27].double(), expected, atol=1e-7, rtol=0)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-6) and float(out[:14].abs().max()) == 0.0


def test_black_baseline_uses_the_models_normalisation(cnn, batch):
    class Pre:
        mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)

        def normalize(self, t):
            return (t - torch.tensor(self.mean).view(1, 3, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1)

    cnn.preprocess = Pre()
    black = ss.methods.Black()(batch, cnn)
    torch.testing.assert_close(black[0, :, 0, 0], torch.tensor([-2.0, -2.0, -3.0]))
    del cnn.preprocess
    with pytest.raises(MethodError, match="normalisation"):
        ss.IntegratedGradients(cnn, baseline="black").explain(batch, target=0)


def test_bad_arguments_raise_clear_errors(cnn):
    with pytest.raises(MethodError, match="rule"):
        ss.IntegratedGradients(cnn, rule="simpson")
    with pytest.raises(MethodError, match="steps"):
        ss.IntegratedGradients(cnn, n_steps=0)
    with pytest.raises(MethodError, match="baseline"):
        ss.IntegratedGradients(cnn, baseline="grey")
