"""Tiny models with hand-set weights whose attributions are known; imported by tests and conftest."""

from __future__ import annotations

import torch
from torch import nn

C, H, W, K = 3, 8, 8, 4


class Linear(nn.Module):
    """scores = W · flatten(x) + b: every gradient method's answer is known in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(C * H * W, K)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(K, C * H * W, generator=g))
            self.fc.bias.copy_(torch.arange(K, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))

    def weight_map(self, k: int) -> torch.Tensor:
        return self.fc.weight[k].detach().view(1, C, H, W)


class SmallCNN(nn.Module):
    """Conv → BN → ReLU (in-place, the same module used twice) → conv → pool → linear."""

    def __init__(self, smooth: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.conv1 = nn.Conv2d(C, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.act: nn.Module = nn.Softplus() if smooth else nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6, K)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            self.bn.running_mean.copy_(torch.randn(6, generator=g) * 0.1)
            self.bn.running_var.copy_(torch.rand(6, generator=g) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn(self.conv1(x)))
        h = self.act(self.conv2(h))  # the activation module is re-used on purpose
        return self.fc(self.drop(h.mean((2, 3))))


class TinyViT(nn.Module):
    """A timm VisionTransformer on 8×8 inputs: 4×4 patches (a 2×2 grid) plus a class token, 2 blocks.

    Built from a fixed seed, with its own ``SmallCNN``-like knobs so the shared invariant tests can treat
    it the same way: a dropout that matters in train mode and a re-used activation are not needed here.
    """

    def __init__(self) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        torch.manual_seed(3)  # timm initialises from the global generator; fixed here for reproducible tests
        self.vit = VisionTransformer(
            img_size=H,
            patch_size=4,
            in_chans=C,
            num_classes=K,
            embed_dim=8,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            drop_rate=0.1,
        )
        self.patch_embed = self.vit.patch_embed  # the same module, so the patch size is found at the top

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)
