"""The timm architectures the sweep runs, by family, with what attention rollout must do on each.

``rollout`` is None for a model whose attention is one global softmax over the tokens (rollout must give a
map), or a fragment of the reason the refusal must give. The docs' pass table is this list.
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
from torch import nn

NO_ATTENTION = "has no attention layers"


@dataclass(frozen=True)
class Arch:
    name: str
    family: str
    rollout: str | None = NO_ATTENTION  # None: global attention, rollout must work


CNN = "CNN"
MOBILE = "mobile CNN / hybrid"
META = "MetaFormer"
HYBRID = "hybrid CNN + attention"
VIT = "plain / distilled / class-attention ViT"
SWIN = "Swin-style (windowed)"
MULTI = "multi-branch ViT"
HIER = "hierarchical ViT"
MLP = "MLP / other token mixers"

ARCHITECTURES: tuple[Arch, ...] = (
    # CNNs
    Arch("resnet10t", CNN),
    Arch("test_resnet", CNN),
    Arch("regnetx_002", CNN),
    Arch("regnety_002", CNN),
    Arch("efficientnet_b0", CNN),
    Arch("tf_efficientnetv2_b0", CNN),
    Arch("mixnet_s", CNN),
    Arch("mnasnet_050", CNN),
    Arch("semnasnet_050", CNN),
    Arch("tinynet_e", CNN),
    Arch("dla46_c", CNN),
    Arch("hrnet_w18_small", CNN),
    Arch("skresnet18", CNN),
    Arch("gernet_s", CNN),
    Arch("ese_vovnet19b_slim", CNN),
    Arch("hgnetv2_b0", CNN),
    Arch("convnext_atto", CNN),
    Arch("test_nfnet", CNN),
    Arch("regnetz_b16", CNN),
    Arch("cs3darknet_focus_s", CNN),
    # mobile CNNs and mobile hybrids
    Arch("mobilenetv2_050", MOBILE),
    Arch("mobilenetv3_small_050", MOBILE),
    Arch("mobilenetv4_conv_small", MOBILE),
    Arch("lcnet_050", MOBILE),
    Arch("ghostnet_050", MOBILE),
    Arch("repghostnet_050", MOBILE),
    Arch("fasternet_t0", MOBILE),
    Arch("starnet_s1", MOBILE),
    Arch("repvit_m1", MOBILE),
    Arch("fastvit_t8", MOBILE, "FastViT"),
    Arch("mobilevit_xxs", MOBILE, "MobileViT attends only among pixels"),
    Arch("mobilevitv2_050", MOBILE, "MobileViT-v2's separable self-attention is linear"),
    Arch("edgenext_xx_small", MOBILE, "EdgeNeXt's attention (SDTA) runs between channels"),
    Arch("efficientvit_b0", MOBILE, "linear ReLU attention"),
    Arch("efficientvit_m0", MOBILE, "cascaded group attention"),
    Arch("shvit_s1", MOBILE, "SHViT"),
    Arch("swiftformer_xs", MOBILE, "additive attention is linear"),
    # MetaFormers
    Arch("poolformer_s12", META),
    Arch("inception_next_atto", META),
    Arch("mambaout_femto", META),
    # hybrids: convolutions with attention
    Arch("vit_tiny_r_s16_p8_224", HYBRID, None),
    Arch("coatnet_pico_rw_224", HYBRID, "CoAtNet"),
    Arch("maxvit_pico_rw_256", HYBRID, "MaxViT"),
    Arch("levit_128s", HYBRID, "LeViT subsamples its tokens"),
    Arch("efficientformer_l1", HYBRID, "EfficientFormer attends only in its last stage"),
    Arch("efficientformerv2_s0", HYBRID, "strided (down-sampling) attention"),
    Arch("visformer_tiny", HYBRID, "Visformer attends in two stages"),
    Arch("botnet26t_256", HYBRID, "BoTNet attends only inside"),
    Arch("lambda_resnet26t", HYBRID, "lambda layers"),
    # plain, distilled, class-attention ViTs (global attention: rollout applies)
    Arch("vit_tiny_patch16_224", VIT, None),
    Arch("deit_tiny_patch16_224", VIT, None),
    Arch("deit_tiny_distilled_patch16_224", VIT, None),
    Arch("test_vit", VIT, None),
    Arch("test_vit_relpos", VIT, None),
    Arch("vit_pwee_patch16_reg1_gap_256", VIT, None),
    Arch("eva02_tiny_patch14_224", VIT, None),
    Arch("cait_xxs24_224", VIT, None),
    Arch("convit_tiny", VIT, None),
    Arch("xcit_nano_12_p16_224", VIT, "XCiT's attention (cross-covariance) runs between channels"),
    Arch("volo_d1_224", VIT, "outlook attention"),
    # Swin-style: windowed attention
    Arch("swin_tiny_patch4_window7_224", SWIN, "Swin attends only within local windows"),
    Arch("tiny_vit_5m_224", SWIN, "TinyViT attends only within local windows"),
    Arch("gcvit_xxtiny", SWIN, "GC ViT attends only within local windows"),
    # multi-branch ViTs
    Arch("crossvit_tiny_240", MULTI, "two branches"),
    # hierarchical ViTs
    Arch("pvt_v2_b0", HIER, "spatial-reduction attention"),
    Arch("pit_ti_224", HIER, "PiT pools its tokens"),
    Arch("hiera_tiny_224", HIER, "mask units"),
    # MLP and other token mixers
    Arch("mixer_s16_224", MLP),
    Arch("gmlp_ti16_224", MLP),
    Arch("resmlp_12_224", MLP),
)


def build(name: str) -> nn.Module:
    """timm's architecture with random weights (seeded) and no weight left at (or next to) zero, in eval mode.

    timm zero-initialises some classifier heads (MLP-Mixer), last-BatchNorm gains of residual blocks (ResNet's
    ``zero_init_last``) and starts layer scales at 1e-5 or 1e-6: left so, whole branches contribute nothing and
    a random model's maps say nothing about the architecture. Those are drawn again: weights and biases from
    N(0, 0.02²), gains and layer scales from U(0.5, 1).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model(name, pretrained=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if p.numel() == 0 or float(p.abs().max()) > 1e-4:
                continue
            if p.dim() >= 2 or key.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            else:  # gains and layer scales
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.5)
    return model.eval()


def input_size(model: nn.Module) -> tuple[int, int]:
    size = model.pretrained_cfg.get("input_size", (3, 224, 224))
    return int(size[-2]), int(size[-1])
