"""The inference copy: same outputs as the model, the model untouched, and no rewrite where it would lie."""

from __future__ import annotations

import pytest
import torch
from model_snapshot import assert_same, snapshot
from tiny_models import SmallCNN
from torch import nn

import saliscope as ss
from saliscope.core.inference_copy import _COPIES, FOLD_FROM_ROWS, PROBE_PASSES, inference_copy, inference_net


def _trained_bn(channels: int, seed: int) -> nn.BatchNorm2d:
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(channels, generator=g))
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) * 3 + 0.1)
    return bn


class ConvBNChain(nn.Module):
    """conv(bias) → BN → ReLU → depthwise conv(no bias) → BN → pool."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 4, 3, padding=1), _trained_bn(4, 1)
        self.c2, self.b2 = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), _trained_bn(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b2(self.c2(torch.relu(self.b1(self.c1(x))))).mean((2, 3))


class RawAlsoUsed(nn.Module):
    """The conv's raw output is used beside the norm's: folding would change the answer."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.b = nn.Conv2d(3, 4, 3, padding=1), _trained_bn(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c(x)
        return (self.b(h) + h).mean((2, 3))


class InPlaceBetween(nn.Module):
    """An in-place ReLU between conv and norm: the norm's input is the same tensor object, but changed."""

    def __init__(self) -> None:
        super().__init__()
        self.c, self.b = nn.Conv2d(3, 4, 3, padding=1), _trained_bn(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu_(self.c(x))).mean((2, 3))


def _batch(n: int = 3, size: int = 8) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_folding_gives_the_same_outputs_and_removes_every_norm():
    model = ConvBNChain().eval()
    x = _batch()
    folded = inference_copy(model, x[:1])
    assert folded is not None and folded is not model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-5)


def test_folding_in_float64_is_exact_to_float64_rounding():
    model = ConvBNChain().double().eval()
    x = _batch().double()
    folded = inference_copy(model, x[:1])
    assert folded is not None
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("model_type", [RawAlsoUsed, InPlaceBetween])
def test_no_fold_where_the_conv_output_is_not_only_the_norms_input(model_type):
    model = model_type().eval()
    assert inference_copy(model, _batch()[:1]) is None
    assert inference_net(model, _batch()[:1]) is model


def test_a_norm_in_training_mode_is_not_folded():
    model = ConvBNChain().train()
    before = snapshot(model)
    assert inference_copy(model, _batch()[:2]) is None
    assert_same(before, snapshot(model))  # no probe pass ran: the running statistics are untouched


def test_the_model_is_left_exactly_as_found():
    model = SmallCNN().eval()
    before = snapshot(model)
    folded = inference_copy(model, _batch()[:1])
    assert folded is not None and isinstance(model.bn, nn.BatchNorm2d)
    assert_same(before, snapshot(model))
    with torch.no_grad():
        torch.testing.assert_close(folded(_batch()), model(_batch()), atol=1e-5, rtol=1e-5)


def test_the_copy_is_kept_until_the_weights_change():
    model = ConvBNChain().eval()
    probe = _batch()[:1]
    first = inference_net(model, probe)
    assert first is not model and inference_net(model, probe) is first
    with torch.no_grad():
        model.c1.weight.mul_(2)  # an optimiser step, load_state_dict, re-initialisation: in place
    second = inference_net(model, probe)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(probe), model(probe), atol=1e-5, rtol=1e-5)


def test_a_model_switched_to_training_mode_does_not_get_the_folded_copy():
    model = ConvBNChain().eval()
    probe = _batch()[:2]
    assert inference_net(model, probe) is not model
    model.b1.train()  # its batch statistics now count: a copy with it folded would answer differently
    before = snapshot(model)
    assert inference_net(model, probe) is model  # no copy for a model in training mode, not even a probe
    assert_same(before, snapshot(model))
    model.eval()
    assert inference_net(model, probe) is not model


@pytest.mark.parametrize("size", [(64, 64), (65, 47)])
def test_timm_norm_act_layers_fold_and_same_padding_becomes_static(size):
    timm = pytest.importorskip("timm")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=10).eval()
    with torch.no_grad():  # trained-looking statistics, so the fold has something to fold
        for i, m in enumerate(model.modules()):
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=torch.Generator().manual_seed(i))
                m.running_var.uniform_(0.5, 2.0, generator=torch.Generator().manual_seed(i))
    assert any(type(m).__name__ == "Conv2dSame" for m in model.modules())
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    fast = inference_copy(model, x[:1])
    assert fast is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert not any(type(m).__name__ == "Conv2dSame" for m in fast.modules())
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kernel, stride, size", [(3, 2, 112), (3, 2, 113), (5, 2, 28), (4, 3, 17), (3, 1, 9)])
def test_static_padding_reads_exactly_what_same_padding_reads(kernel, stride, size):
    from timm.layers import Conv2dSame

    from saliscope.core.inference_copy import _static_padding

    torch.manual_seed(0)
    same = Conv2dSame(4, 6, kernel, stride=stride, groups=2).eval()
    x = torch.randn(2, 4, size, size + 3, dtype=torch.float64)
    same = same.double()
    static = _static_padding(same, (size, size + 3))
    assert type(static) is nn.Conv2d
    with torch.no_grad():
        torch.testing.assert_close(static(x), same(x), atol=1e-12, rtol=0)


def test_the_copy_is_made_again_for_another_input_size():
    timm = pytest.importorskip("timm")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3).eval()
    small, large = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 48, 48)
    first = inference_net(model, small)
    assert inference_net(model, small) is first and inference_net(model, large) is not first
    with torch.no_grad():
        torch.testing.assert_close(inference_net(model, large)(large), model(large), atol=1e-4, rtol=1e-4)


def test_perturbation_maps_are_the_same_folded_or_not(monkeypatch):
    """A run long enough to fold gives the map the model itself gives (the fold changes rounding only)."""
    model = ConvBNChain().eval()
    x = _batch(2, 16)
    e = ss.RISE(model, n_masks=FOLD_FROM_ROWS, seed=0).explain(x, 0)
    assert inference_net(model, x[:1]) is not model  # it was folded (and is kept)
    assert model in _COPIES and _COPIES[model][1] is not None  # made by RISE's run, not by the line above
    monkeypatch.setattr("saliscope.core.inference_copy.FOLD_FROM_ROWS", 10**9)
    unfolded = ss.RISE(model, n_masks=FOLD_FROM_ROWS, seed=0).explain(x, 0)
    assert e.cost.forward_passes == unfolded.cost.forward_passes + PROBE_PASSES == 2 * FOLD_FROM_ROWS + PROBE_PASSES
    torch.testing.assert_close(e.attributions, unfolded.attributions, atol=1e-5, rtol=1e-4)


def test_a_metric_run_folds_by_one_images_rows_alone():
    """Short runs use the model even after a copy is made; a batch decides as each image alone."""
    model = ConvBNChain().eval()
    x = _batch(4, 16)
    sal = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    short = FOLD_FROM_ROWS - 1  # rows per image, the clean step aside
    before = ss.metrics.deletion(model, x[:1], sal[:1], steps=short)
    inference_net(model, x[:1])  # a copy made by something else must not change the next short run
    again = ss.metrics.deletion(model, x[:1], sal[:1], steps=short)
    batched = ss.metrics.deletion(model, x, sal, steps=short)  # 4 × 15 rows: still 15 per image
    assert before.cost.forward_passes == again.cost.forward_passes == 1 + short  # no probe: the model itself
    assert batched.cost.forward_passes == 4 * (1 + short)
    assert torch.equal(before.scores, again.scores) and torch.equal(batched.scores[:1], before.scores)
    long = ss.metrics.deletion(ConvBNChain().eval(), x[:1], sal[:1], steps=FOLD_FROM_ROWS)
    assert long.cost.forward_passes == 1 + PROBE_PASSES + FOLD_FROM_ROWS  # a new model's copy: its probe passes


def test_a_gradient_batch_equals_each_image_alone_on_the_model_itself():
    """One pass per image never pays for the copy, however large the batch: no probe, each image's map."""
    model = ConvBNChain().eval()
    x = _batch(FOLD_FROM_ROWS, 16)
    batched = ss.Gradient(model).explain(x, 0)
    assert batched.cost.forward_passes == FOLD_FROM_ROWS  # no probe passes: the model itself
    for i in (0, FOLD_FROM_ROWS - 1):
        alone = ss.Gradient(model).explain(x[i : i + 1], 0).attributions
        torch.testing.assert_close(batched.attributions[i : i + 1], alone, rtol=1e-5, atol=1e-8)
