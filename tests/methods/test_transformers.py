"""Vision Transformers: token-grid inference, CAMs and rollouts on timm / torchvision ViTs, and a tiny ViT
trained here on a task whose evidence is known."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from timm.models.vision_transformer import VisionTransformer

from saliscope.core.errors import MethodError
from saliscope.methods.cam import GradCAM, HiResCAM, ScoreCAM
from saliscope.methods.layers import LayerGrid, candidate_layers, resolve_layer, token_grid
from saliscope.methods.transformer import AttentionRollout, GradientRollout


@pytest.mark.parametrize(
    ("tokens", "size", "patch", "expected"),
    [
        (197, (224, 224), (16, 16), ((14, 14), 1)),  # ViT: class token
        (198, (224, 224), (16, 16), ((14, 14), 2)),  # DeiT distilled: class + distillation tokens
        (201, (224, 224), (16, 16), ((14, 14), 5)),  # class + 4 register tokens
        (196, (224, 224), (16, 16), ((14, 14), 0)),  # no prefix (global-pool ViT)
        (97, (128, 192), (16, 16), ((8, 12), 1)),  # non-square input
        (197, (224, 224), None, ((14, 14), 1)),  # no patch size known: factorised from the count
        (145, (192, 256), None, ((12, 12), 1)),  # ... the aspect ratio picks the grid (12 × 12 fits 4:3 badly)
    ],
)
def test_token_grid_layouts(tokens, size, patch, expected):
    found = token_grid(tokens, *size, patch)
    if tokens == 145:
        assert found is None or found[0][0] < found[0][1]  # never a grid that contradicts the aspect ratio
    else:
        assert found == expected


def test_token_maps_drop_the_prefix_and_keep_patch_order():
    grid = LayerGrid("blocks.0", "tokens", (2, 3), prefix_tokens=2)
    tokens = torch.arange(1 * 8 * 4, dtype=torch.float32).view(1, 8, 4)  # 2 prefix + 6 patches, 4 channels
    maps = grid.to_maps(tokens)
    assert maps.shape == (1, 4, 2, 3)
    torch.testing.assert_close(maps[0, :, 0, 1], tokens[0, 3])  # patch (0, 1) is token 2 + 1
    torch.testing.assert_close(maps[0, :, 1, 0], tokens[0, 5])


def manual_gradcam(model, layer, x, score, to_maps):
    """Grad-CAM written out with a plain hook and autograd: the reference for the real architectures."""
    box = {}

    def hook(m, i, out):
        box["a"] = out

    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        xin = x.clone().requires_grad_(True)
        s = score(model(xin))
        (g,) = torch.autograd.grad(s.sum(), box["a"])
    finally:
        handle.remove()
    a, g = to_maps(box["a"].detach()), to_maps(g)
    cam = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))
    return torch.nn.functional.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)


def tokens_to_maps(prefix, h, w):
    return lambda t: t[:, prefix:].transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)


@pytest.fixture(scope="module")
def x224():
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def _timm(name, **kw):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False, **kw).eval()


@pytest.mark.parametrize(
    ("name", "layer", "prefix", "layout"),
    [
        ("vit_tiny_patch16_224", "blocks.11.norm1", 1, "tokens"),
        ("deit_tiny_distilled_patch16_224", "blocks.11.norm1", 2, "tokens"),
        ("swin_tiny_patch4_window7_224", "norm", 0, "nhwc"),
    ],
)
def test_timm_transformers_get_a_layer_and_a_map(name, layer, prefix, layout, x224):
    model = _timm(name)
    grid = resolve_layer(model, x224, None)
    assert (grid.name, grid.prefix_tokens, grid.layout) == (layer, prefix, layout)
    e = GradCAM(model).explain(x224, target=3)
    assert e.attributions.shape == (1, 1, 224, 224) and e.params["layer"] == layer
    assert e.attributions.std() > 0
    to_maps = (lambda t: t.permute(0, 3, 1, 2)) if layout == "nhwc" else tokens_to_maps(prefix, 14, 14)
    expected = manual_gradcam(model, layer, x224, lambda out: out[:, 3], to_maps)
    torch.testing.assert_close(e.attributions, expected, rtol=1e-4, atol=1e-6)


def test_register_token_vit_and_rollout_restore_fused_attention(x224):
    model = _timm("vit_tiny_patch16_224", reg_tokens=4, depth=2)
    assert resolve_layer(model, x224, None).prefix_tokens == 5
    fused = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    for cls in (AttentionRollout, GradientRollout):
        e = cls(model).explain(x224, target=1)
        assert e.extras["layer_map"].shape == (1, 14, 14)
        assert e.attributions.min() >= 0 and e.attributions.std() > 0
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == fused


def test_rollout_by_hand_on_two_layers():
    a1 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    a2 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    heads = [a.expand(1, 2, 2, 2) for a in (a1, a2)]  # two identical heads
    eye = torch.eye(2)
    expected = (0.5 * a2 + 0.5 * eye) @ (0.5 * a1 + 0.5 * eye)
    model = VisionTransformer(img_size=8, patch_size=8, num_classes=2, embed_dim=8, depth=1, num_heads=2)
    torch.testing.assert_close(AttentionRollout(model).combine(heads, None)[0], expected)


def test_torchvision_vit_uses_multihead_attention_weights():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = torchvision.models.VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3
        ).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    assert resolve_layer(model, x, None).name == "encoder.layers.encoder_layer_1.ln_1"
    for cls in (AttentionRollout, GradientRollout):
        e = cls(model).explain(x, target=[0, 2])
        assert e.attributions.shape == (2, 1, 32, 32) and torch.isfinite(e.attributions).all()
    e = GradCAM(model).explain(x, target=[0, 2])
    classes = torch.tensor([0, 2])
    expected = manual_gradcam(
        model,
        "encoder.layers.encoder_layer_1.ln_1",
        x,
        lambda out: out.gather(1, classes[:, None])[:, 0],
        tokens_to_maps(1, 4, 4),
    )
    torch.testing.assert_close(e.attributions, expected, rtol=1e-4, atol=1e-6)
    hooks = [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()]
    assert sum(hooks) == 0


def test_rollout_on_a_cnn_or_a_windowed_transformer_is_a_clear_error(x224):
    cnn = torchvision.models.resnet18().eval()
    with pytest.raises(MethodError, match=r"does not apply: ResNet has no attention layers .* saliscope.GradCAM"):
        AttentionRollout(cnn).explain(x224, target=0)
    swin = _timm("swin_tiny_patch4_window7_224", depths=(1, 1, 1, 1))
    with pytest.raises(MethodError, match="Swin attends only within local windows"):
        AttentionRollout(swin).explain(x224, target=0)


def test_cnn_layers_chosen_automatically(x224):
    assert resolve_layer(torchvision.models.resnet18().eval(), x224, None).name == "layer4"
    assert resolve_layer(torchvision.models.vgg11().eval(), x224, None).name == "features"
    names = candidate_layers(torchvision.models.resnet18().eval(), x224)
    assert names[-1] == "layer4" and "layer3.1" in names and "fc" not in names


# -- meaning: a tiny ViT trained here to find a bright square ------------------------------------------
def _squares(n, g):
    """16×16 noise; class 1 images carry a bright 2×2 square in one of the 16 patches (4×4 pixels each)."""
    x = torch.randn(n, 3, 16, 16, generator=g) * 0.3
    pos = torch.randint(0, 16, (n,), generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    for i in range(n):
        if y[i]:
            r, c = divmod(int(pos[i]), 4)
            x[i, :, r * 4 + 1 : r * 4 + 3, c * 4 + 1 : c * 4 + 3] += 2.0
    return x, y, pos


@pytest.fixture(scope="module")
def trained_vit():
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = VisionTransformer(
            img_size=16, patch_size=4, num_classes=2, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0
        )
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(150):
        x, y, _ = _squares(64, g)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_tiny_vit_maps_point_at_the_square(trained_vit):
    x, y, pos = _squares(200, torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert (trained_vit(x).argmax(1) == y).float().mean() > 0.95
    x, pos = x[y == 1], pos[y == 1]
    for cls in (GradCAM, HiResCAM, ScoreCAM, AttentionRollout, GradientRollout):
        cells = cls(trained_vit).explain(x, target=1).extras["layer_map"].flatten(1)
        hit = (cells.argmax(1) == pos).float().mean()
        assert hit >= 0.8, (cls.__name__, float(hit))


def test_rollout_passes_are_chunked_by_the_memory_budget():
    """Attention rollout runs under no_grad: its chunks come from the forward-only probe (invariant 3)."""
    model = VisionTransformer(img_size=8, patch_size=4, num_classes=2, embed_dim=8, depth=1, num_heads=2).eval()
    rows = []
    handle = model.head.register_forward_hook(lambda m, i, o: rows.append(int(o.shape[0])))
    try:
        AttentionRollout(model, memory_budget=1000).explain(torch.randn(3, 3, 8, 8), target=0)
    finally:
        handle.remove()
    assert rows and max(rows) == 1


# -- Hugging Face transformers: rollouts read the attentions the model returns ------------------------------
def hf_attentions(model, x, cls=None):
    """The attentions ``model(x, output_attentions=True)`` returns with eager attention (a copy, so the model
    under test keeps its own implementation), and their gradients for class ``cls``."""
    import copy

    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    out = eager(x, output_attentions=True)
    attentions = list(out.attentions)
    grads = None if cls is None else torch.autograd.grad(out.logits[:, cls].sum(), attentions)
    return [a.detach() for a in attentions], grads


def hand_rollout(attentions):
    t = attentions[0].shape[-1]
    r = torch.eye(t).expand(attentions[0].shape[0], t, t)
    for a in attentions:
        a = 0.5 * a.mean(1) + 0.5 * torch.eye(t)
        r = (a / a.sum(-1, keepdim=True)) @ r
    return r


def hand_gradient_rollout(attentions, grads):
    t = attentions[0].shape[-1]
    r = torch.eye(t).expand(attentions[0].shape[0], t, t)
    for a, g in zip(attentions, grads, strict=True):
        r = r + (g * a).clamp(min=0).mean(1) @ r
    return r


READOUTS = {  # which rows the classifier reads, and where the patch tokens start
    "vit": (lambda r: r[:, 0, 1:]),
    "deit_distilled": (lambda r: 0.5 * (r[:, 0, 2:] + r[:, 1, 2:])),  # DeiT averages its two heads
    "beit": (lambda r: r[:, 1:, 1:].mean(1)),  # mean pooling of the patch tokens
    "dinov2": (lambda r: 0.5 * (r[:, 0, 1:] + r[:, 1:, 1:].mean(1))),  # classifier on [cls, patch mean]
}


@pytest.mark.parametrize("kind", list(READOUTS))
def test_hf_rollouts_equal_a_hand_written_rollout_over_the_returned_attentions(kind):
    import hf_models

    model = getattr(hf_models, kind)()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    from model_snapshot import assert_same, snapshot

    before, implementation = snapshot(model), model.config._attn_implementation
    attentions, grads = hf_attentions(model, x, cls=2)
    read = READOUTS[kind]
    rollout = ss_explain(AttentionRollout(model), x, 2)
    torch.testing.assert_close(rollout.extras["layer_map"], read(hand_rollout(attentions)).reshape(2, 4, 4))
    assert rollout.attributions.shape == (2, 1, 32, 32) and rollout.params["output"] == "logits"
    gradient = ss_explain(GradientRollout(model), x, 2)
    expected = read(hand_gradient_rollout(attentions, grads)).reshape(2, 4, 4)
    torch.testing.assert_close(gradient.extras["layer_map"], expected, rtol=1e-4, atol=1e-7)
    # Left as found: same implementation, no hooks (transformers' own recorders are taken away again).
    assert_same(before, snapshot(model))
    assert model.config._attn_implementation == implementation == "sdpa"
    assert not any(hasattr(m, "_output_capturing_hooks_installed") for m in model.modules())
    # ... and transformers still returns attentions to its user afterwards.
    model.set_attn_implementation("eager")
    assert len(model(x, output_attentions=True).attentions) == 2


def ss_explain(explainer, x, cls):
    return explainer.explain(x, target=cls)


def test_hf_gradient_equals_the_gradient_of_the_logit_by_hand():
    import hf_models

    import saliscope as ss

    for model in (hf_models.vit(), hf_models.convnext()):
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
        xin = x.clone().requires_grad_(True)
        (expected,) = torch.autograd.grad(model(xin).logits[:, 1].sum(), xin)
        e = ss.Gradient(model).explain(x, target=1)
        torch.testing.assert_close(e.attributions, expected)
        assert e.params["output"] == "logits"


def test_hf_cams_pick_a_layer_the_score_depends_on():
    import hf_models

    import saliscope as ss

    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    layers = {
        "vit": "vit.layers.1.layernorm_before",  # the class token reads the patches through the last attention
        "beit": "beit.layernorm",  # mean pooling reads every patch token at the end
        "convnext": "convnext.encoder.stages.1",  # the last map before pooling
        "swin": "swin.layernorm",  # the last tokens before pooling (not the 1-D pooler)
    }
    for kind, layer in layers.items():
        model = getattr(hf_models, kind)()
        e = ss.GradCAM(model).explain(x)
        assert e.params["layer"] == layer, kind
        assert e.attributions.std() > 0
        # the automatic choice gives the very map of that layer named by hand
        torch.testing.assert_close(e.attributions, ss.GradCAM(model, layer=layer).explain(x).attributions)


def test_hf_models_without_global_attention_are_refused_with_the_reason():
    import hf_models

    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(MethodError, match="Swin attends only within local windows"):
        AttentionRollout(hf_models.swin()).explain(x)
    with pytest.raises(MethodError, match="ConvNextForImageClassification has no attention layers"):
        GradientRollout(hf_models.convnext()).explain(x)


def test_timm_class_attention_and_late_class_tokens_chain_over_shared_tokens(x224):
    """CaiT: self-attention over the patches, then class-attention blocks (the class token joins late): the
    map equals the hand-chained product, with the class token's row updated by the class attention only."""
    model = _timm("cait_xxs24_224", depth=2).eval()
    layers = []

    def keep(_m, _i, out):
        layers.append(out.detach())

    fused = [(m, m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")]
    for m, _ in fused:
        m.fused_attn = False
    handles = [m.attn_drop.register_forward_hook(keep) for m in model.modules() if hasattr(m, "attn_drop")]
    try:
        with torch.no_grad():
            model(x224)
    finally:
        for h in handles:
            h.remove()
        for m, was in fused:
            m.fused_attn = was
    p = layers[0].shape[-1]
    r = torch.eye(p).expand(1, p, p)
    for a in layers:
        a = a.mean(1)
        if a.shape[-2] == 1:  # class attention over [cls, patches]: only the class row changes
            if r.shape[1] == p:
                r = torch.cat([torch.zeros(1, 1, p), r], dim=1)
            row = 0.5 * a + 0.5 * torch.eye(1, p + 1)
            r = torch.cat([(row / row.sum(-1, keepdim=True)) @ r, r[:, 1:]], dim=1)
        else:
            a = 0.5 * a + 0.5 * torch.eye(p)
            r = (a / a.sum(-1, keepdim=True)) @ r
    e = AttentionRollout(model).explain(x224, target=0)
    torch.testing.assert_close(e.extras["layer_map"], r[:, 0].reshape(1, 14, 14))
    assert [m.fused_attn for m, _ in fused] == [was for _, was in fused]
