"""rrr_loss: values against slow re-implementations, double backprop, the model left as found, end to end."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from saliscope.core.errors import InputError
from saliscope.datasets import Artefact, make_shortcut_dataset
from saliscope.train import rrr_loss, rrr_terms, train_tiny_cnn
from saliscope.train.folders import load_folder

B, C, H, W, K = 2, 3, 5, 5, 3


class SmoothNet(nn.Module):
    """conv 3×3 → tanh → dropout → GAP → linear: smooth, so second derivatives are not zero."""

    def __init__(self, fail_with_grad: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(C, 4, 3, padding=1)
        self.act = nn.Tanh()
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, K)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.fail_with_grad = fail_with_grad
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv(x))
        if self.fail_with_grad and torch.is_grad_enabled():
            raise RuntimeError("boom")
        return self.fc(self.drop(h).mean((2, 3)))


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    y = torch.tensor([2, 0])
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[:2, 1:4] = True
    return x, y, mask


def test_gradient_penalty_equals_a_slow_loop_and_finite_differences() -> None:
    model = SmoothNet().eval()
    x, y, mask = _batch()
    terms = rrr_terms(model, x, y, mask, weight=3.0)
    expected = []
    for b in range(B):  # one image, one class at a time
        xb = x[b : b + 1].clone().requires_grad_(True)
        grad = torch.zeros_like(xb)
        for k in range(K):
            grad += torch.autograd.grad(F.log_softmax(model(xb), dim=1)[0, k], xb)[0]
        expected.append((grad[0].pow(2) * mask).sum())
    assert torch.allclose(terms.penalty, torch.stack(expected).mean(), rtol=1e-10)
    assert torch.allclose(terms.cross_entropy, F.cross_entropy(model(x), y), rtol=1e-12)
    assert torch.allclose(terms.total, terms.cross_entropy + 3.0 * terms.penalty, rtol=1e-12)
    assert torch.allclose(rrr_loss(model, x, y, mask, weight=3.0), terms.total, rtol=1e-12)

    # the input gradient itself, by central differences of Σ_k log p_k on image 0 (all steps in one batch)
    eps = 1e-6
    steps = torch.eye(C * H * W, dtype=torch.float64).view(-1, C, H, W) * eps
    with torch.no_grad():
        up = F.log_softmax(model(x[:1] + steps), dim=1).sum(1)
        down = F.log_softmax(model(x[:1] - steps), dim=1).sum(1)
    fd = ((up - down) / (2 * eps)).view(C, H, W)
    assert torch.allclose(expected[0], (fd.pow(2) * mask).sum(), rtol=1e-6)


def test_empty_mask_gives_zero_penalty_and_plain_cross_entropy() -> None:
    model = SmoothNet().eval()
    x, y, _ = _batch()
    for kind in ("gradient", "gradcam"):
        terms = rrr_terms(model, x, y, torch.zeros(H, W), kind=kind, layer="conv")
        assert float(terms.penalty.detach()) == 0.0
        assert torch.equal(terms.total, F.cross_entropy(model(x), y))


def test_penalty_gradient_reaches_the_weights_double_backprop() -> None:
    model = SmoothNet().eval()
    x, y, mask = _batch()
    params = dict(model.named_parameters())
    penalty = rrr_terms(model, x, y, mask).penalty
    grads = dict(zip(params, torch.autograd.grad(penalty, list(params.values())), strict=True))
    eps = 1e-6
    for name, index in (("conv.weight", (1, 2, 0, 1)), ("fc.weight", (2, 3)), ("conv.bias", (0,))):
        p = params[name]
        with torch.no_grad():
            p[index] += eps
            up = float(rrr_terms(model, x, y, mask).penalty)
            p[index] -= 2 * eps
            down = float(rrr_terms(model, x, y, mask).penalty)
            p[index] += eps
        assert float(grads[name][index]) != 0.0
        assert float(grads[name][index]) == pytest.approx((up - down) / (2 * eps), rel=1e-5)


class GapNet(nn.Module):
    """1×1 conv (hand-set, 3 → 2 channels) → GAP → linear: Grad-CAM of class k is Σ_c W_kc A_c / (H·W)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(C, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]]).view(2, C, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, -1.0], [0.5, 4.0]]))
            self.fc.bias.copy_(torch.tensor([0.1, -0.2]))
        self.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


def test_gradcam_penalty_on_a_hand_set_gap_net() -> None:
    model = GapNet()
    x, _, mask = _batch()
    y = torch.tensor([1, 0])
    terms = rrr_terms(model, x, y, mask, kind="gradcam", layer="conv", weight=2.0)
    a = torch.einsum("kc,bchw->bkhw", model.conv.weight.detach().view(2, C), x)  # (B, 2, H, W) activations
    wfc = model.fc.weight.detach()
    expected = torch.zeros((), dtype=torch.float64)
    for b in range(B):
        for k in range(2):
            cam = sum(wfc[k, c] / (H * W) * a[b, c] for c in range(2))  # signed Grad-CAM = CAM here
            expected += (cam.pow(2) * mask).sum() / B
    assert torch.allclose(terms.penalty, expected, rtol=1e-10)
    assert torch.allclose(terms.total, F.cross_entropy(model(x), y) + 2.0 * expected, rtol=1e-10)
    # gradient mass inside the mask reaches the conv weights through the CAM (double backprop)
    (g,) = torch.autograd.grad(terms.penalty, model.conv.weight)
    assert g.abs().sum() > 0


@pytest.mark.parametrize("kind", ["gradient", "gradcam"])
def test_model_and_input_are_left_as_found(kind: str) -> None:
    model = SmoothNet().train()  # training mode: rrr_loss must not switch it
    model.fc.weight.requires_grad_(False)
    x, y, mask = _batch()
    x_before = x.clone()
    loss = rrr_loss(model, x, y, mask, kind=kind, layer="conv" if kind == "gradcam" else None)
    assert loss.requires_grad
    assert all(m.training for m in model.modules())
    assert not model.fc.weight.requires_grad and model.conv.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert torch.equal(x, x_before) and not x.requires_grad


def test_hooks_are_removed_when_the_forward_pass_raises() -> None:
    model = SmoothNet(fail_with_grad=True).eval()  # the layer probe runs without grad and passes
    x, y, mask = _batch()
    with pytest.raises(RuntimeError, match="boom"):
        rrr_loss(model, x, y, mask, kind="gradcam", layer="conv")
    assert all(not m._forward_hooks for m in model.modules())


def test_mask_shapes_broadcast_alike_and_bad_ones_name_the_fix() -> None:
    model = SmoothNet().eval()
    x, y, mask = _batch()
    ref = rrr_terms(model, x, y, mask).penalty
    for shaped in (mask.numpy(), mask[None], mask.expand(B, H, W), mask.expand(B, 1, H, W).float()):
        assert torch.allclose(rrr_terms(model, x, y, shaped).penalty, ref, rtol=1e-12)
    # per-image masks: image 1 unmasked gives half of image 0's share
    per_image = torch.stack([mask, torch.zeros_like(mask)])
    alone = rrr_terms(model, x[:1], y[:1], mask).penalty
    assert torch.allclose(rrr_terms(model, x, y, per_image).penalty, alone / 2, rtol=1e-10)
    for bad in (torch.ones(H, W + 1), torch.ones(3, H, W), torch.ones(B, 2, H, W), -torch.ones(H, W)):
        with pytest.raises(InputError) as info:
            rrr_loss(model, x, y, bad)
        assert info.value.fix
    with pytest.raises(InputError, match="labels"):
        rrr_loss(model, x, torch.tensor([0.0, 1.0]), mask)
    with pytest.raises(InputError, match="kind"):
        rrr_loss(model, x, y, mask, kind="saliency")  # type: ignore[arg-type]


def _masked_gradient_mass(model: nn.Module, folder, mask) -> float:
    x, y, _ = load_folder(folder, model.preprocess, model.labels)
    return float(rrr_terms(model, x, y, mask).penalty.detach())


def test_rrr_training_moves_gradient_mass_out_of_the_artefact(tmp_path) -> None:
    data = make_shortcut_dataset(tmp_path, artefact=Artefact(size=0.25), n_train=12, n_test=1, image_size=24)
    mask = data.artefact_mask()
    common = dict(epochs=6, batch_size=8, width=4, seed=0)
    plain = train_tiny_cnn(data.train, **common)
    right = train_tiny_cnn(data.train, rrr_weight=1000.0, irrelevant_mask=mask, **common)
    assert _masked_gradient_mass(right, data.train, mask) < 0.2 * _masked_gradient_mass(plain, data.train, mask)
