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
