import pytest
import torch

import saliscope as ss
from saliscope.wrappers.smoothing import Noise


@pytest.mark.parametrize("inner", ["gradient", "ig", "guided"])
def test_sigma_zero_equals_the_inner_method(cnn, batch, inner):
    make = {
        "gradient": lambda: ss.Gradient(cnn),
        "ig": lambda: ss.IntegratedGradients(cnn, n_steps=4),
        "guided": lambda: ss.GuidedBackprop(cnn),
    }[inner]
    smooth = ss.SmoothGrad(make(), n_samples=5, sigma=0.0, seed=0).explain(batch, target=1)
    plain = make().explain(batch, target=1)
    torch.testing.assert_close(smooth.attributions, plain.attributions)


def test_smoothgrad_equals_the_mean_of_noisy_gradients(cnn, batch):
    seed, n, sigma = 7, 6, 0.2
    e = ss.SmoothGrad(ss.Gradient(cnn), n_samples=n, sigma=sigma, seed=seed, chunk_size=4).explain(batch, target=2)
    grads = []
    for i in range(n):
        noise = Noise(seed, batch.shape[1:], batch.device, batch.dtype)([i])[0]
        std = sigma * (batch.flatten(1).amax(1) - batch.flatten(1).amin(1)).view(-1, 1, 1, 1)
        grads.append(ss.Gradient(cnn).explain(batch + std * noise, target=2).attributions)
    g = torch.stack(grads)
    torch.testing.assert_close(e.attributions, g.mean(0))
    sq = ss.SmoothGrad(ss.Gradient(cnn), n_samples=n, sigma=sigma, seed=seed, mode="squared").explain(batch, target=2)
    torch.testing.assert_close(sq.attributions, (g * g).mean(0))
    var = ss.SmoothGrad(ss.Gradient(cnn), n_samples=n, sigma=sigma, seed=seed, mode="variance").explain(batch, target=2)
    torch.testing.assert_close(var.attributions, g.var(0, unbiased=False), rtol=1e-4, atol=1e-6)
    assert var.method == "vargrad" and sq.method == "smoothgrad-squared"


def test_noisy_copies_keep_the_clean_inputs_predicted_class(cnn, batch):
    e = ss.SmoothGrad(ss.Gradient(cnn), n_samples=8, sigma=1.0, seed=0).explain(batch)
    assert e.classes.tolist() == cnn(batch).argmax(1).tolist()


def test_drawn_seed_is_recorded_and_reproduces_the_map(cnn, batch):
    first = ss.SmoothGrad(ss.Gradient(cnn), n_samples=4).explain(batch, target=0)
    seed = first.params["seed"]
    assert isinstance(seed, int)
    again = ss.SmoothGrad(ss.Gradient(cnn), n_samples=4, seed=seed).explain(batch, target=0)
    torch.testing.assert_close(first.attributions, again.attributions)


def test_smoothgrad_counts_inner_passes(cnn, batch):
    e = ss.SmoothGrad(ss.IntegratedGradients(cnn, n_steps=4), n_samples=3, seed=0).explain(batch, target=0)
    # 3 images x 3 noisy copies x (4 path points + 2 completeness forwards); 3 copies of 4 steps per image
    # are too few to pay for the batch-norm-folded copy, so no probe passes are added
    assert e.cost.backward_passes == 3 * 3 * 4
    assert e.cost.forward_passes == 3 * 3 * 6


def test_rejects_bad_arguments(cnn):
    with pytest.raises(ss.SaliscopeError, match="mode"):
        ss.SmoothGrad(ss.Gradient(cnn), mode="median")
    with pytest.raises(ss.SaliscopeError, match="explainer"):
        ss.SmoothGrad(cnn)


def test_noise_does_not_depend_on_how_samples_are_requested():
    whole = Noise(5, torch.Size((3, 4, 4)), torch.device("cpu"), torch.float32)(list(range(40)))
    pieces = Noise(5, torch.Size((3, 4, 4)), torch.device("cpu"), torch.float32)
    again = torch.cat([pieces([i]) for i in reversed(range(40))]).flip(0)
    torch.testing.assert_close(whole, again, rtol=0, atol=0)
    picked = pieces([33, 2, 17, 17])
    torch.testing.assert_close(picked, whole[[33, 2, 17, 17]], rtol=0, atol=0)
    assert not torch.equal(whole[0], whole[16])  # blocks have different seeds
    assert abs(float(whole.mean())) < 0.05 and abs(float(whole.std()) - 1) < 0.05
