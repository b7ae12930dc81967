"""Checks on what users pass in and what methods produce."""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import InputError, NonFiniteError


def check_batch(x: object) -> Tensor:
    """``x`` must be a floating tensor of shape ``(B, C, H, W)`` with finite values."""
    if not isinstance(x, Tensor):
        raise InputError(
            f"expected a tensor batch, got {type(x).__name__}",
            "preprocess the image first: x = model.preprocess(image)",
        )
    if x.ndim == 3:
        raise InputError(
            f"expected a batch (B, C, H, W), got one image of shape {tuple(x.shape)}",
            "add the batch dimension: x.unsqueeze(0)",
        )
    if x.ndim != 4 or x.shape[0] == 0:
        raise InputError(f"expected a batch (B, C, H, W), got shape {tuple(x.shape)}", "pass x of shape (B, C, H, W)")
    if not x.is_floating_point():
        raise InputError(f"expected a floating-point batch, got {x.dtype}", "convert with x.float() after normalising")
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteError("the input batch contains NaN or Inf", "check how the image was preprocessed")
    return x


def check_finite_attributions(attributions: Tensor, method: str) -> None:
    if not bool(torch.isfinite(attributions).all()):
        raise NonFiniteError(
            f"{method} produced NaN or Inf attributions",
            "run in float64 (precision='float64') or check the model for overflowing activations",
        )
