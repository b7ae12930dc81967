"""Checks on what users pass in and what methods produce."""

from __future__ import annotations

import math

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


def whole(name: str, value: object, fix: str, *, minimum: int = 1) -> int:
    """``value`` as a whole number ``>= minimum`` (bools are not numbers here), else one clear error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum}, got {value!r}", fix)
    return value


def real(
    name: str,
    value: object,
    fix: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> float:
    """``value`` as a finite number in the given bounds (bools are not numbers here), else one clear error
    naming them."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    v = float(value) if number else math.nan  # type: ignore[arg-type]
    checks = [
        (above, "> {:g}", lambda b: v > b),
        (at_least, ">= {:g}", lambda b: v >= b),
        (below, "< {:g}", lambda b: v < b),
        (at_most, "<= {:g}", lambda b: v <= b),
    ]
    ok = number and all(test(bound) for bound, _, test in checks if bound is not None)
    if not ok:
        if at_least is not None and at_most is not None and above is None and below is None:
            span = f"in [{at_least:g}, {at_most:g}]"
        else:
            span = (
                " and ".join(words.format(bound) for bound, words, _ in checks if bound is not None) or "that is finite"
            )
        raise InputError(f"{name} must be a number {span}, got {value!r}", fix)
    return v
