"""Views of raw attributions: channel reduction, choice of evidence sign, robust normalisation.

Views never change the explanation; they compute a new tensor from it, so negative evidence is never lost.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import Tensor

from .errors import InputError

Reduction = Literal["sum", "mean", "sum-abs", "max-abs", "l2", "none"]
Evidence = Literal["signed", "positive", "negative", "absolute"]
REDUCTIONS: tuple[str, ...] = ("sum", "mean", "sum-abs", "max-abs", "l2", "none")
EVIDENCE: tuple[str, ...] = ("signed", "positive", "negative", "absolute")
DEFAULT_ALPHA = 0.8  # overlay opacity at the strongest evidence (the CLI's and viz's default)


class FlatMapWarning(UserWarning):
    """A map with no variation: nothing to show, and usually a sign that the method saw no signal."""


def reduce_channels(attributions: Tensor, how: Reduction = "sum") -> Tensor:
    """``(B, C, H, W)`` → ``(B, 1, H, W)``.

    ``sum`` and ``mean`` keep the sign (what raises the score minus what lowers it, per pixel);
    ``sum-abs``, ``max-abs`` (Simonyan et al. 2014) and ``l2`` give unsigned magnitudes.
    """
    if attributions.ndim != 4:
        raise InputError(f"attributions must be (B, C, H, W), got {tuple(attributions.shape)}", "pass e.attributions")
    if how == "none":
        return attributions
    if how == "sum":
        return attributions.sum(1, keepdim=True)
    if how == "mean":
        return attributions.mean(1, keepdim=True)
    if how == "sum-abs":
        return attributions.abs().sum(1, keepdim=True)
    if how == "max-abs":
        return attributions.abs().amax(1, keepdim=True)
    if how == "l2":
        return attributions.pow(2).sum(1, keepdim=True).sqrt()
    raise InputError(f"unknown channel reduction {how!r}", f"use one of {', '.join(REDUCTIONS)}")


def select_evidence(saliency: Tensor, which: Evidence = "signed") -> Tensor:
    """Keep positive evidence, negative evidence (as positive magnitudes), both signed, or |map|."""
    if which == "signed":
        return saliency
    if which == "positive":
        return saliency.clamp(min=0)
    if which == "negative":
        return (-saliency).clamp(min=0)
    if which == "absolute":
        return saliency.abs()
    raise InputError(f"unknown evidence {which!r}", f"use one of {', '.join(EVIDENCE)}")


def normalize(saliency: Tensor, *, percentile: float = 99.0, signed: bool | None = None) -> Tensor:
    """Robust per-sample scaling of ``(B, 1, H, W)`` maps.

    Divides by the ``percentile``-th percentile of |map| and clips, so one hot pixel does not wash out the
    rest: unsigned maps land in [0, 1], signed maps in [-1, 1] with 0 kept at 0 (so a diverging colormap
    centres on "no evidence"). ``signed=None`` decides from the data. A flat map warns and comes back as 0.
    """
    if not 0 < percentile <= 100:
        raise InputError(f"percentile must be in (0, 100], got {percentile}", "use e.g. percentile=99")
    flat = saliency.detach().float().flatten(1)
    if signed is None:
        signed = bool((flat < 0).any())
    scale = torch.quantile(flat.abs(), percentile / 100.0, dim=1)
    # A zero percentile with non-zero content (sparse maps) falls back to the max, so the content survives.
    scale = torch.where(scale > 0, scale, flat.abs().amax(1))
    out = flat / scale.clamp(min=torch.finfo(torch.float32).tiny).unsqueeze(1)
    if bool((scale == 0).any()):
        warnings.warn(
            "a saliency map is flat (all zero): the method saw no signal for this target",
            FlatMapWarning,
            stacklevel=2,
        )
        out = torch.where((scale == 0).unsqueeze(1), torch.zeros_like(out), out)
    low = -1.0 if signed else 0.0
    return out.clamp(low, 1.0).view_as(saliency)
