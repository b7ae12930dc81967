"""Tiny models with known answers for the faithfulness metrics, and a model-state snapshot."""

from __future__ import annotations

import torch
from torch import nn

SIDE = 32  # image side: 1024 pixels
TOP, LEFT, BLOCK = 8, 16, 8  # the block the model reads: rows 8..15, columns 16..23 (64 pixels)


class BlockReader(nn.Module):
    """Class 0's logit is the mean of one 8×8 block of channel 0; class 1's logit is a constant 0.5.

    Only the block matters, so the best possible deletion order removes the block first, and hiding the
    block (with a constant 0) flips the top-1 class when the block held ones.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block = x[:, 0, TOP : TOP + BLOCK, LEFT : LEFT + BLOCK].mean(dim=(1, 2))
        return torch.stack([self.scale * block, torch.full_like(block, 0.5)], dim=1)


def block_mask(batch: int = 1) -> torch.Tensor:
    """``(batch, 1, SIDE, SIDE)`` float: 1 on the block, 0 elsewhere (the perfect map)."""
    m = torch.zeros(batch, 1, SIDE, SIDE)
    m[:, :, TOP : TOP + BLOCK, LEFT : LEFT + BLOCK] = 1
    return m


def block_image(batch: int = 1, seed: int = 0) -> torch.Tensor:
    """``(batch, 3, SIDE, SIDE)``: ones on channel 0's block, zeros elsewhere on channel 0, noise on 1 and 2."""
    x = torch.randn(batch, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))
    x[:, 0] = block_mask(batch)[:, 0]
    return x


class _SharedCount:
    """A call counter that deep copies share: calls into a private copy of the model (the folded
    inference copy of long forward-only runs) count as calls into the model."""

    def __init__(self) -> None:
        self.n = 0

    def __deepcopy__(self, memo: dict) -> _SharedCount:
        return self


class Counting(nn.Module):
    """Counts forward calls of ``net`` (and of its copies); raises on call number ``fail_on`` (1-based)."""

    def __init__(self, net: nn.Module, fail_on: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.count = _SharedCount()
        self.fail_on = fail_on

    @property
    def calls(self) -> int:
        return self.count.n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count.n += 1
        if self.fail_on is not None and self.calls >= self.fail_on:
            raise RuntimeError("boom")
        return self.net(x)


def awkward(model: nn.Module) -> nn.Module:
    """Train mode with one submodule in eval, one frozen parameter, one stale .grad: all must survive."""
    model.train()
    modules = [m for m in model.modules() if list(m.parameters(recurse=False))]
    modules[-1].eval()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    params[-1].grad = torch.full_like(params[-1], 7.0)
    return model
