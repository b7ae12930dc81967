"""CAM values worked out by hand on tiny conv nets, and slow re-implementations to compare against."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import SmallCNN
from torch import nn

import saliscope as ss
from saliscope.core.errors import InputError, MethodError
from saliscope.methods.cam import (
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    GuidedGradCAM,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)

FC = torch.tensor([[2.0, -1.0], [-1.0, 3.0]])
BIAS = torch.tensor([0.5, 0.0])


class GapNet(nn.Module):
    """features (identity 1×1 conv: A = x) → global average pool → fc(FC, BIAS).

    score_c = sum_k FC[c, k] · mean(A_k) + BIAS[c], so dS/dA_kij = FC[c, k] / (h·w) everywhere.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(2, 2, 1, bias=False)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.features.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.fc.weight.copy_(FC)
            self.fc.bias.copy_(BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture
def gap():
    return GapNet().eval()


@pytest.fixture
def a():
    """A fixed 2-channel 3×3 input (= the layer's activations), with both signs."""
    return torch.tensor(
        [[[1.0, 2.0, 0.0], [0.0, 4.0, 1.0], [3.0, 0.0, 1.0]], [[0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [1.0, 5.0, -1.0]]]
    ).unsqueeze(0)


@pytest.mark.parametrize("c", [0, 1])
def test_gradcam_hirescam_xgradcam_by_hand(gap, a, c):
    # Grad-CAM: w_k = FC[c,k]/9; map = ReLU(sum_k w_k A_k). With a constant gradient, HiResCAM's element
    # weights and XGrad-CAM's normalised weights are the same numbers.
    expected = torch.relu((FC[c].view(2, 1, 1) / 9 * a[0]).sum(0))
    for cls in (GradCAM, HiResCAM, XGradCAM):
        e = cls(gap).explain(a, target=c)
        torch.testing.assert_close(e.attributions[0, 0], expected, msg=cls.__name__)
        torch.testing.assert_close(e.extras["layer_map"][0], expected)
        assert e.params["layer"] == "features"


def test_layercam_by_hand(gap, a):
    expected = torch.relu((torch.relu(FC[0]).view(2, 1, 1) / 9 * a[0]).sum(0))
    torch.testing.assert_close(LayerCAM(gap).explain(a, target=0).attributions[0, 0], expected)


def test_gradcam_plus_plus_by_hand(gap, a):
    c = 1
    g = FC[c] / 9  # the constant gradient per channel
    s = a[0].sum((1, 2))
    alpha = g**2 / (2 * g**2 + s * g**3)
    weights = 9 * alpha * torch.relu(g)
    expected = torch.relu((weights.view(2, 1, 1) * a[0]).sum(0))
    torch.testing.assert_close(GradCAMPlusPlus(gap).explain(a, target=c).attributions[0, 0], expected)


def test_signed_and_counterfactual_gradcam(gap, a):
    signed = (FC[0].view(2, 1, 1) / 9 * a[0]).sum(0)
    assert (signed < 0).any() and (signed > 0).any()
    torch.testing.assert_close(GradCAM(gap, evidence="signed").explain(a, target=0).attributions[0, 0], signed)
    # The counterfactual map (negated gradients, then ReLU) is exactly the negative part, kept negative.
    negative = GradCAM(gap, evidence="negative").explain(a, target=0).attributions[0, 0]
    torch.testing.assert_close(negative, signed.clamp(max=0))
    for cls in (GradCAMPlusPlus, HiResCAM, XGradCAM, LayerCAM):
        n = cls(gap, evidence="negative").explain(a, target=0).attributions
        assert (n <= 0).all() and (n < 0).any(), cls.__name__


def test_ablationcam_by_hand(gap, a):
    # Zeroing channel k removes FC[c,k]·mean(A_k) from the score: w_k = FC[c,k]·mean(A_k) / |y|.
    c = 0
    means = a[0].mean((1, 2))
    y = (FC[c] * means).sum() + BIAS[c]
    w = FC[c] * means / y.abs()
    expected = torch.relu((w.view(2, 1, 1) * a[0]).sum(0))
    e = AblationCAM(gap).explain(a, target=c)
    torch.testing.assert_close(e.attributions[0, 0], expected)


def slow_scorecam(model, x, c, layer):
    """Score-CAM written the obvious way: one channel, one forward pass."""
    acts = {}
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
    with torch.no_grad():
        model(x)
    handle.remove()
    a = acts["a"][0]
    scores = []
    for k in range(a.shape[0]):
        m = nn.functional.interpolate(a[k][None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else torch.zeros_like(m)
        with torch.no_grad():
            scores.append(model(x * m)[0, c])
    w = torch.softmax(torch.stack(scores), 0)
    return torch.relu((w.view(-1, 1, 1) * a).sum(0))


def test_scorecam_equals_slow_reimplementation():
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    e = ScoreCAM(model, layer="conv2", chunk_size=4).explain(x, target=[1, 2])
    for i, c in enumerate([1, 2]):
        torch.testing.assert_close(e.extras["layer_map"][i], slow_scorecam(model, x[i : i + 1], c, "conv2"))
    # one pass per channel and image: 6 channels × 2 images, + 2 for the activations, + 1 probe of the
    # model's layers (first call only), + 0 for a fixed target
    assert e.cost.forward_passes == 2 + 12 + 1 and e.cost.backward_passes == 0


def test_scorecam_scores_constant_channels_once():
    model = SmallCNN().eval()
    with torch.no_grad():
        model.conv2.weight[:3] = 0  # three channels become constant (their bias) over the image
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    e = ScoreCAM(model, layer="conv2").explain(x, target=0)
    # layer probe, activations, 3 live channels, one shared all-zero mask
    assert e.cost.forward_passes == 1 + 1 + 3 + 1
    torch.testing.assert_close(e.extras["layer_map"][0], slow_scorecam(model, x, 0, "conv2"))


def test_scorecam_max_channels_scores_fewer():
    model = SmallCNN().eval()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    e = ScoreCAM(model, layer="conv2", max_channels=2).explain(x, target=0)
    assert e.cost.forward_passes <= 1 + 1 + 3
    with pytest.raises(InputError, match="max_channels"):
        ScoreCAM(model, max_channels=0)


def test_eigencam_equals_numpy_svd():
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    e = EigenCAM(model, layer="conv2", evidence="signed").explain(x)
    acts = {}
    handle = model.conv2.register_forward_hook(lambda m, i, o: acts.setdefault("a", o.detach()))
    model(x)
    handle.remove()
    for i in range(2):
        a = acts["a"][i].numpy()
        m = a.reshape(a.shape[0], -1).T
        m = m - m.mean(0)
        vt = np.linalg.svd(m, full_matrices=False)[2]
        p = m @ vt[0]
        p = p if np.corrcoef(p, a.sum(0).ravel())[0, 1] >= 0 else -p
        np.testing.assert_allclose(e.extras["layer_map"][i].numpy().ravel(), p, rtol=1e-4, atol=1e-5)


def test_guided_gradcam_is_guided_backprop_times_gradcam():
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    gg = GuidedGradCAM(model).explain(x, target=1).attributions
    cam = GradCAM(model).explain(x, target=1).attributions
    guided = ss.GuidedBackprop(model).explain(x, target=1).attributions
    torch.testing.assert_close(gg, guided * cam)


class BlobNet(nn.Module):
    """Detects a bright blob: 3×3 box filter → ReLU → global max pool → 2 classes (blob, no blob)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.fill_(1 / 9)
            self.conv.bias.fill_(-0.5)
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).amax((2, 3)))


@pytest.mark.parametrize("cls", [GradCAM, GradCAMPlusPlus, HiResCAM, XGradCAM, LayerCAM, ScoreCAM, AblationCAM])
@pytest.mark.parametrize("where", [(3, 4), (12, 9)])
def test_cam_peaks_at_the_known_evidence(cls, where):
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.2
    r, c = where
    x[0, 0, r - 1 : r + 2, c - 1 : c + 2] = 3.0
    m = cls(BlobNet().eval()).explain(x, target=0).attributions[0, 0]
    peak = divmod(int(m.argmax()), 16)
    assert abs(peak[0] - r) <= 1 and abs(peak[1] - c) <= 1, (cls.__name__, peak)


def test_several_classes_share_one_forward_pass():
    model = SmallCNN().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    many = GradCAM(model).explain_each(x, [0, 1, 3])
    for e, c in zip(many, [0, 1, 3], strict=True):
        torch.testing.assert_close(e.attributions, GradCAM(model).explain(x, target=c).attributions)
        assert e.target.classes.tolist() == [c, c] and e.params["targets_in_call"] == 3
    # the layer probe (1 sample, forward and backward), 1 forward of the batch, 3 backwards
    assert many[0].cost.forward_passes == 1 + 2 and many[0].cost.backward_passes == 1 + 6
    ranked = GradCAM(model).explain_each(x, ss.top_k_targets(2))
    top = model(x).topk(2).indices
    assert [e.target.classes.tolist() for e in ranked] == [top[:, 0].tolist(), top[:, 1].tolist()]


def test_explain_each_works_for_every_method_without_sharing():
    x = torch.randn(1, 3, 8, 8)
    both = ss.Gradient(SmallCNN().eval()).explain_each(x, [0, 2])
    torch.testing.assert_close(both[1].attributions, ss.Gradient(SmallCNN().eval()).explain(x, target=2).attributions)


def test_layer_by_name_or_module_and_clear_errors():
    model = SmallCNN().eval()
    x = torch.randn(1, 3, 8, 8)
    by_name = GradCAM(model, layer="conv1").explain(x, target=0)
    by_module = GradCAM(model, layer=model.conv1).explain(x, target=0)
    torch.testing.assert_close(by_name.attributions, by_module.attributions)
    assert by_module.params["layer"] == "conv1"
    with pytest.raises(MethodError, match=r"no layer named 'conv3'.*conv1, bn, act, conv2.*automatic choice is 'act'"):
        GradCAM(model, layer="conv3").explain(x, target=0)
    with pytest.raises(MethodError, match=r"layer 'fc' outputs shape \(1, 4\), not a spatial map.*conv2"):
        GradCAM(model, layer="fc").explain(x, target=0)
    with pytest.raises(MethodError, match="not a submodule"):
        GradCAM(model, layer=nn.Conv2d(3, 3, 1)).explain(x, target=0)
    with pytest.raises(InputError, match="unknown evidence"):
        GradCAM(model, evidence="both")
    with pytest.raises(MethodError, match="no layer with a spatial output"):
        GradCAM(nn.Sequential(nn.Flatten(), nn.Linear(192, 4)).eval()).explain(x, target=0)


class Residual(nn.Module):
    """The CAM layer sits inside a residual block: its output is added to a tensor from below it."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.inner = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = h + self.inner(h)
        return self.fc(h.mean((2, 3)))


def test_ablationcam_fast_path_is_checked_against_full_reruns():
    model = Residual().eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    fast = AblationCAM(model, layer="inner")
    e = fast.explain(x, target=[0, 2])
    assert all(fast._head_only.values())  # broadcasting the image's own batch row is exact here
    slow = AblationCAM(model, layer="inner")
    slow._head_only = _AlwaysFalse()
    torch.testing.assert_close(e.attributions, slow.explain(x, target=[0, 2]).attributions)
    assert e.cost.forward_passes < slow.explain(x, target=[0, 2]).cost.forward_passes * 2


class _AlwaysFalse(dict):
    def get(self, key, default=None):
        return False


def slow_ablationcam(model, x, c, layer):
    """Ablation-CAM the obvious way: zero one channel at the layer's last call, re-run the whole model."""
    module = dict(model.named_modules())[layer]
    state = {"calls": 0, "channel": None, "acts": None}

    def hook(m, i, out):
        state["calls"] += 1
        if state["calls"] == state["last"]:
            state["acts"] = out.detach().clone()
            if state["channel"] is not None:
                out = out.clone()
                out[:, state["channel"]] = 0
                return out
        return None

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            state["last"] = 10**9
            model(x)
            state["last"], state["calls"] = state["calls"], 0
            y = model(x)[0, c]
            acts = state["acts"][0]
            drops = []
            for k in range(acts.shape[0]):
                state["calls"], state["channel"] = 0, k
                drops.append(model(x)[0, c])
    finally:
        handle.remove()
    w = (y - torch.stack(drops)) / y.abs()
    return torch.relu((w.view(-1, 1, 1) * acts).sum(0))


def test_ablationcam_on_a_reused_layer_ablates_only_its_last_call():
    model = SmallCNN().eval()  # the automatic layer, "act", is one ReLU module called twice per forward
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    e = AblationCAM(model).explain(x, target=[1, 3])
    assert e.params["layer"] == "act"
    for i, c in enumerate([1, 3]):
        torch.testing.assert_close(e.extras["layer_map"][i], slow_ablationcam(model, x[i : i + 1], c, "act"))


@pytest.mark.parametrize("cls", [GradCAM, ScoreCAM, AblationCAM, EigenCAM])
def test_every_pass_is_chunked_by_the_memory_budget(cls):
    """Invariant 3: with a budget below one row's activations (a 6×8×8 float map is 1.5 kB) every model call
    holds a single row; gradient-free passes are measured by what they create, not by what autograd saves
    (nothing, under no_grad: that would allow every row at once)."""
    model = SmallCNN().eval()
    rows = []
    handle = model.fc.register_forward_hook(lambda m, i, o: rows.append(int(o.shape[0])))
    try:
        e = cls(model, layer="conv2", memory_budget=1000).explain(torch.randn(3, 3, 8, 8), target=0)
    finally:
        handle.remove()
    assert max(rows) == 1 and len(rows) == e.cost.batches
