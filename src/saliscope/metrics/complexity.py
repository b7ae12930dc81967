"""Complexity: how concentrated is a map? No model needed.

Both metrics read ``|map|`` of the channel-summed map (``saliency_map``), flattened to ``n`` pixels:

- :func:`sparseness`: the Gini index (Chalasani et al. 2020, "Concise Explanations of Neural Networks
  using Adversarial Training", ICML) — 0 for a uniform map, ``1 - 1/n`` for a single pixel; higher means
  more concise.
- :func:`entropy`: Shannon entropy of ``|map| / sum |map|`` (Bhatt, Weller & Moura 2020, "Evaluating and
  Aggregating Feature-based Model Explanations", IJCAI) — ``log n`` for a uniform map, 0 for a single
  pixel; lower means less complex.

A map that is zero everywhere has neither: it gives NaN, with a :class:`FlatMapWarning`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..core.errors import NonFiniteError
from ..core.views import FlatMapWarning
from ._common import Attribution, saliency_map
from .results import floats


def _magnitudes(attribution: Attribution) -> Tensor:
    """``(B, n)`` float64 ``|map|``, warning for all-zero maps."""
    sal = saliency_map(attribution).flatten(1).double().abs().cpu()
    if not bool(torch.isfinite(sal).all()):
        raise NonFiniteError("the map contains NaN or Inf", "check the explanation (try the method in float64)")
    zero = (sal.sum(dim=1) == 0).nonzero().flatten().tolist()
    if zero:
        warnings.warn(
            FlatMapWarning(f"the map of image(s) {zero} is zero everywhere: its complexity is NaN"), stacklevel=3
        )
    return sal


@dataclass(frozen=True)
class Sparseness:
    """Gini index of ``|map|`` per image, ``gini`` ``(B,)`` in [0, 1 - 1/n]; higher is sparser."""

    gini: Tensor
    higher_is_better: ClassVar[bool] = True

    @property
    def value(self) -> Tensor:
        return self.gini

    def as_dict(self) -> dict[str, Any]:
        return {"metric": "sparseness", "higher_is_better": True, "gini": floats(self.gini)}


def sparseness(attribution: Attribution) -> Sparseness:
    """Gini index (Chalasani et al. 2020): with ``a`` sorted ascending, ``sum_k (2k - n - 1) a_k / (n sum a)``.

    Args:
        attribution: an Explanation or a ``(B, 1|C, H, W)`` map.
    """
    a = _magnitudes(attribution).sort(dim=1).values
    n = a.shape[1]
    k = torch.arange(1, n + 1, dtype=torch.float64)
    total = a.sum(dim=1)
    gini = ((2 * k - n - 1) * a).sum(dim=1) / (n * total)
    return Sparseness(gini=torch.where(total > 0, gini, torch.full_like(gini, math.nan)).float())


@dataclass(frozen=True)
class Entropy:
    """Shannon entropy (nats) of the normalised ``|map|``, ``entropy`` ``(B,)`` in [0, ``max_entropy``];
    lower is less complex. ``max_entropy = log n``, a uniform map's."""

    entropy: Tensor
    max_entropy: float
    higher_is_better: ClassVar[bool] = False

    @property
    def value(self) -> Tensor:
        return self.entropy

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": "entropy",
            "higher_is_better": False,
            "entropy": floats(self.entropy),
            "max_entropy": self.max_entropy,
        }


def entropy(attribution: Attribution) -> Entropy:
    """Entropy of ``p = |map| / sum |map|`` (Bhatt et al. 2020), ``-sum p log p`` with ``0 log 0 = 0``."""
    a = _magnitudes(attribution)
    total = a.sum(dim=1, keepdim=True)
    p = a / total.clamp_min(1e-300)
    h = -torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p)).sum(dim=1)
    h = torch.where(total[:, 0] > 0, h, torch.full_like(h, math.nan))
    return Entropy(entropy=h.float(), max_entropy=math.log(a.shape[1]))
