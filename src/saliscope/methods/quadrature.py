"""Quadrature rules for path integrals over alpha in [0, 1]."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..core.errors import MethodError

Rule = Literal["riemann-left", "riemann-right", "riemann-middle", "riemann-trapezoid", "gauss-legendre"]
RULES: tuple[str, ...] = ("riemann-left", "riemann-right", "riemann-middle", "riemann-trapezoid", "gauss-legendre")


def quadrature(rule: Rule, n: int) -> tuple[Tensor, Tensor]:
    """Nodes ``alpha`` ``(n,)`` in [0, 1] and weights ``(n,)`` summing to 1, in float64.

    Gauss–Legendre integrates polynomials of degree ``2n - 1`` exactly, so a smooth path needs far fewer
    steps than a Riemann sum for the same completeness gap.
    """
    if n < 1:
        raise MethodError(f"the number of steps must be >= 1, got {n}", "use e.g. n_steps=32")
    if rule == "riemann-left":
        alphas = np.arange(n) / n
        weights = np.full(n, 1.0 / n)
    elif rule == "riemann-right":
        alphas = np.arange(1, n + 1) / n
        weights = np.full(n, 1.0 / n)
    elif rule == "riemann-middle":
        alphas = (np.arange(n) + 0.5) / n
        weights = np.full(n, 1.0 / n)
    elif rule == "riemann-trapezoid":
        if n < 2:
            raise MethodError("the trapezoid rule needs at least 2 steps", "use n_steps >= 2")
        alphas = np.linspace(0.0, 1.0, n)
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2
    elif rule == "gauss-legendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        alphas = (nodes + 1.0) / 2.0
        weights = w / 2.0
    else:
        raise MethodError(f"unknown integration rule {rule!r}", f"use one of {', '.join(RULES)}")
    return torch.from_numpy(alphas), torch.from_numpy(weights)
