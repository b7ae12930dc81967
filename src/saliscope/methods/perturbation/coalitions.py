"""The sampler and the solver that LIME and KernelSHAP share; they differ only in their weighting.

A *coalition* ``z`` in ``{0, 1}^S`` keeps the superpixels where it is 1 and hides the others. Both methods
draw coalitions the same way (a size ``k`` from a size law, then ``k`` superpixels uniformly at random) and
fit the scores with the same weighted linear least squares, solved in closed form in float64:

- LIME (Ribeiro et al. 2016): sizes ~ Binomial(S, 1/2), i.e. each superpixel kept with probability 1/2
  (``lime_image``'s sampler); sample weights from an exponential kernel on the cosine distance to the
  unperturbed image; a ridge penalty; a free intercept.
- KernelSHAP (Lundberg & Lee 2017): sizes drawn from the Shapley kernel's size law
  ``q(k) ∝ (S - 1) / (k (S - k))``, so the kernel weights are already in the sampling and every sample
  weighs 1; the coalitions come in complementary pairs (Covert & Lee 2021, a variance reduction); the
  intercept and the sum are pinned to ``f(none)`` and ``f(all) - f(none)`` (the efficiency axiom).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def lime_size_law(n_features: int) -> Tensor:
    """``(S + 1,)`` probabilities of keeping ``k`` superpixels: Binomial(S, 1/2)."""
    k = torch.arange(n_features + 1, dtype=torch.float64)
    log_choose = (
        torch.lgamma(torch.tensor(n_features + 1.0, dtype=torch.float64))
        - torch.lgamma(k + 1)
        - torch.lgamma(n_features - k + 1)
    )
    return torch.exp(log_choose - n_features * math.log(2.0))


def shapley_size_law(n_features: int) -> Tensor:
    """``(S + 1,)`` probabilities of coalition sizes under the Shapley kernel (sizes 0 and S excluded)."""
    k = torch.arange(n_features + 1, dtype=torch.float64)
    law = torch.zeros(n_features + 1, dtype=torch.float64)
    if n_features < 2:
        return torch.full((n_features + 1,), 1.0 / (n_features + 1), dtype=torch.float64)
    inner = k[1:-1]
    law[1:-1] = (n_features - 1) / (inner * (n_features - inner))
    return law / law.sum()


def draw_coalitions(
    n: int, n_features: int, generator: torch.Generator, size_law: Tensor, *, paired: bool = False
) -> Tensor:
    """``(n, S)`` float64 0/1 coalitions: a size from ``size_law``, then that many features at random.

    ``paired`` makes every odd row the complement of the row before it.
    """
    if n <= 0:
        return torch.zeros((0, n_features), dtype=torch.float64)
    sizes = torch.multinomial(size_law.float(), n, replacement=True, generator=generator)
    ranks = torch.rand((n, n_features), generator=generator).argsort(1).argsort(1)
    z = (ranks < sizes.view(-1, 1)).double()
    if paired:
        z[1::2] = 1 - z[0::2][: z[1::2].shape[0]]
    return z


def lime_weights(z: Tensor, kernel_width: float) -> Tensor:
    """``exp(-d² / width²)`` with ``d`` the cosine distance between each coalition and all-ones."""
    n_features = z.shape[1]
    cosine = (z.sum(1) / n_features).sqrt()  # z·1 / (|z| |1|) for 0/1 vectors
    return torch.exp(-((1 - cosine) ** 2) / kernel_width**2)


def weighted_least_squares(features: Tensor, y: Tensor, weights: Tensor, alpha: float) -> Tensor:
    """``argmin_b sum_i w_i (y_i - features_i · b)² + alpha |b|²``, the minimum-norm one (float64, CPU)."""
    root = weights.sqrt().view(-1, 1)
    a, rhs = root * features, root * y.view(-1, 1)
    if alpha > 0:
        a = torch.cat([a, math.sqrt(alpha) * torch.eye(features.shape[1], dtype=a.dtype)])
        rhs = torch.cat([rhs, torch.zeros((features.shape[1], 1), dtype=a.dtype)])
    return torch.linalg.lstsq(a, rhs, driver="gelsd").solution[:, 0]


def fit_with_intercept(z: Tensor, y: Tensor, weights: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """LIME's surrogate: coefficients ``(S,)`` and intercept of a weighted ridge fit (intercept not penalised)."""
    # The penalty weighs against the raw weights, as in lime's (and scikit-learn's) Ridge.
    w = weights / weights.sum()
    z_mean, y_mean = (w.view(-1, 1) * z).sum(0), (w * y).sum()
    coef = weighted_least_squares(z - z_mean, y - y_mean, weights, alpha)
    return coef, y_mean - z_mean @ coef


def fit_efficient(z: Tensor, y: Tensor, none: Tensor, full: Tensor, alpha: float) -> Tensor:
    """KernelSHAP's surrogate: coefficients ``(S,)`` with intercept ``none`` and sum ``full - none``.

    Writes ``phi = (full - none) / S + u`` with ``u`` summing to zero, and fits ``u`` on the coalitions
    projected onto the sum-zero subspace; the minimum-norm (or ridge) ``u`` then stays in that subspace,
    so the constraint holds exactly and no feature is singled out to carry it.
    """
    n_features = z.shape[1]
    gap = full - none
    centred = z - z.mean(1, keepdim=True)
    residual = y - none - z.sum(1) * gap / n_features
    if len(y) == 0:
        return (gap / n_features).expand(n_features).clone()
    u = weighted_least_squares(centred, residual, torch.ones_like(y), alpha)
    return gap / n_features + u - u.mean()
