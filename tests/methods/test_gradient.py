import pytest
import torch
from torch import nn

import saliscope as ss
from saliscope.core.errors import MethodError


def test_gradient_of_linear_model_is_its_weights(linear, batch):
    e = ss.Gradient(linear).explain(batch, target=2)
    torch.testing.assert_close(e.attributions, linear.weight_map(2).expand_as(batch))
    torch.testing.assert_close(e.scores, linear(batch)[:, 2].detach())
    assert e.cost.forward_passes == 3 and e.cost.backward_passes == 3


def test_gradient_x_input_of_linear_model(linear, batch):
    e = ss.GradientXInput(linear).explain(batch, target=1)
    torch.testing.assert_close(e.attributions, linear.weight_map(1) * batch)
    # Completeness of gradient x input on a linear model: the map sums to the score minus the bias.
    torch.testing.assert_close(e.attributions.flatten(1).sum(1), linear(batch)[:, 1].detach() - 1.0)


def test_probability_space_gradient_matches_autograd(cnn, batch):
    e = ss.Gradient(cnn).explain(batch, target=ss.ClassTarget(3, space="probability"))
    x = batch.clone().requires_grad_()
    torch.softmax(cnn(x), 1)[:, 3].sum().backward()
    torch.testing.assert_close(e.attributions, x.grad)


def test_predicted_class_target_explains_the_argmax(cnn, batch):
    e = ss.Gradient(cnn).explain(batch)
    assert e.classes.tolist() == cnn(batch).argmax(1).tolist()
    second = ss.Gradient(cnn).explain(batch, target=ss.PredictedClass(rank=1))
    assert second.classes.tolist() == cnn(batch).topk(2, 1).indices[:, 1].tolist()


def test_per_sample_targets(linear, batch):
    e = ss.Gradient(linear).explain(batch, target=[0, 1, 3])
    for i, k in enumerate([0, 1, 3]):
        torch.testing.assert_close(e.attributions[i : i + 1], linear.weight_map(k))


def test_views_reduce_channels(linear, batch):
    e = ss.Gradient(linear).explain(batch, target=0)
    w = linear.weight_map(0)
    torch.testing.assert_close(e.saliency("max-abs")[0], w.abs().amax(1)[0].unsqueeze(0))
    torch.testing.assert_close(e.saliency("sum-abs")[0], w.abs().sum(1)[0].unsqueeze(0))
    torch.testing.assert_close(e.saliency("l2")[0], w.pow(2).sum(1).sqrt()[0].unsqueeze(0))
    torch.testing.assert_close(e.saliency("sum", "negative"), (-w.sum(1, keepdim=True)).clamp(min=0).expand(3, 1, 8, 8))


class OneHidden(nn.Module):
    """y = v · relu(U x): guided backprop has the closed form U^T [(Ux > 0) * max(v, 0)]."""

    def __init__(self, inplace: bool) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.u = nn.Linear(12, 7, bias=False)
        self.relu = nn.ReLU(inplace=inplace)
        self.v = nn.Linear(7, 2, bias=False)
        with torch.no_grad():
            self.u.weight.copy_(torch.randn(7, 12, generator=g))
            self.v.weight.copy_(torch.randn(2, 7, generator=g))

    def forward(self, x):
        return self.v(self.relu(self.u(x.flatten(1))))


@pytest.mark.parametrize("inplace", [False, True])
def test_guided_backprop_closed_form(inplace):
    net = OneHidden(inplace).eval()
    x = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(6))
    e = ss.GuidedBackprop(net).explain(x, target=1)
    u, v = net.u.weight, net.v.weight[1]
    active = (x.flatten(1) @ u.T > 0).float()
    expected = (active * v.clamp(min=0)) @ u
    torch.testing.assert_close(e.attributions.flatten(1), expected)
    # and it differs from the plain gradient, which keeps negative v
    plain = ss.Gradient(net).explain(x, target=1).attributions.flatten(1)
    assert not torch.allclose(plain, expected)


def test_guided_backprop_with_reused_inplace_relu_matches_manual_rule(cnn, batch):
    e = ss.GuidedBackprop(cnn).explain(batch, target=0)

    class Guided(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h):
            ctx.save_for_backward(h)
            return h.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (h,) = ctx.saved_tensors
            return g.clamp(min=0) * (h > 0)

    x = batch.clone().requires_grad_()
    h = Guided.apply(cnn.bn(cnn.conv1(x)))
    h = Guided.apply(cnn.conv2(h))
    cnn.fc(h.mean((2, 3)))[:, 0].sum().backward()
    torch.testing.assert_close(e.attributions, x.grad)


def test_guided_backprop_needs_activation_modules(linear, batch):
    with pytest.raises(MethodError, match="activation modules"):
        ss.GuidedBackprop(linear).explain(batch, target=0)


class ViewsItsInput(torch.nn.Module):
    """A conv net that flattens its raw input with .view(), which a channels_last tensor cannot do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)
        self.fc = torch.nn.Linear(3 * 8 * 8 + 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.conv(x).mean((2, 3))
        return self.fc(torch.cat([x.view(x.shape[0], -1), pooled], 1))


def test_model_that_views_its_input_gets_a_contiguous_input(batch):
    from saliscope.core import memory_layout

    model = ViewsItsInput().eval()
    x = batch.detach().requires_grad_(True)
    (expected,) = torch.autograd.grad(model(x)[:, 1].sum(), x)
    e = ss.Gradient(model).explain(batch, target=1)
    torch.testing.assert_close(e.attributions, expected)
    assert memory_layout._CHANNELS_LAST[model] is False
    assert e.cost.forward_passes == 3


def test_channels_last_input_gives_the_contiguous_answer(cnn, batch):
    x = batch.detach().requires_grad_(True)
    (expected,) = torch.autograd.grad(cnn(x)[:, 2].sum(), x)
    torch.testing.assert_close(ss.Gradient(cnn).explain(batch, target=2).attributions, expected)
