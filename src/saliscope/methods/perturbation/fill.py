"""What a perturbation puts where it hides the input: a constant, each image's mean colour, or a blur."""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor, nn

from ...core.errors import InputError
from ..baselines import Blur

Replacement = Literal["constant", "mean", "blur"]
REPLACEMENTS: tuple[str, ...] = get_args(Replacement)


def check_replacement(replacement: str, blur_sigma: float) -> None:
    if replacement not in REPLACEMENTS:
        raise InputError(f"unknown replacement {replacement!r}", f"use one of {', '.join(REPLACEMENTS)}")
    if replacement == "blur" and not blur_sigma > 0:
        raise InputError(f"blur_sigma must be > 0, got {blur_sigma}", "use e.g. blur_sigma=10 (pixels)")


def replacement_image(
    x: Tensor, net: nn.Module, replacement: Replacement, *, value: float = 0.0, blur_sigma: float = 10.0
) -> Tensor:
    """``(B, C, H, W)``: what each pixel of ``x`` becomes where a perturbation hides it.

    ``"constant"`` is ``value`` in model space (0 is the dataset's mean colour for normalised inputs),
    ``"mean"`` each image's per-channel mean, ``"blur"`` the image under a Gaussian blur of
    ``blur_sigma`` pixels (hides detail, keeps colour and layout).
    """
    check_replacement(replacement, blur_sigma)
    if replacement == "constant":
        return torch.full_like(x, float(value))
    if replacement == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()
    return Blur(sigma=blur_sigma)(x, net)
