"""The result of every method: raw, signed attributions at input resolution, with what they cost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from .cost import Cost
from .targets import BoundClasses, BoundTarget
from .views import Evidence, Reduction, normalize, reduce_channels, select_evidence


@dataclass(frozen=True)
class Explanation:
    """One method's answer for a batch.

    Attributes:
        attributions: ``(B, C, H, W)`` or ``(B, 1, H, W)`` raw signed attributions on the input's device.
        target: the bound target that was explained (one fixed class per sample for class targets).
        method: the method's name, e.g. ``"integrated-gradients"``.
        params: the method's parameters (JSON-friendly values).
        cost: forward / backward passes, seconds, peak memory.
        scores: ``(B,)`` the target score on the clean input, when the method computed it.
        completeness_gap: ``(B,)`` for path methods, ``sum(attr) - (f(x) - f(baseline))``.
        extras: further per-sample tensors a method reports (e.g. ``baseline_scores``).
    """

    attributions: Tensor
    target: BoundTarget
    method: str
    params: Mapping[str, Any]
    cost: Cost
    scores: Tensor | None = None
    completeness_gap: Tensor | None = None
    extras: Mapping[str, Tensor] = field(default_factory=lambda: MappingProxyType({}))

    def __len__(self) -> int:
        return int(self.attributions.shape[0])

    @property
    def classes(self) -> Tensor | None:
        """``(B,)`` class indices explained, for class targets."""
        return self.target.classes if isinstance(self.target, BoundClasses) else None

    def saliency(self, reduce: Reduction = "sum", evidence: Evidence = "signed") -> Tensor:
        """``(B, 1, H, W)`` map: channels reduced, then the chosen evidence kept."""
        return select_evidence(reduce_channels(self.attributions, reduce), evidence)

    def normalized(
        self, reduce: Reduction = "sum", evidence: Evidence = "signed", *, percentile: float = 99.0
    ) -> Tensor:
        """:meth:`saliency`, robustly scaled per sample to [0, 1] (or [-1, 1] when signed)."""
        return normalize(self.saliency(reduce, evidence), percentile=percentile, signed=evidence == "signed")

    def __getitem__(self, index: int | slice) -> Explanation:
        """The explanation of one sample (kept as a batch of one) or a slice of the batch."""
        rows = torch.arange(len(self))[index]
        rows = rows.view(-1)

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[rows.to(t.device)]

        return replace(
            self,
            attributions=self.attributions[rows.to(self.attributions.device)],
            target=self.target.take(rows),
            scores=pick(self.scores),
            completeness_gap=pick(self.completeness_gap),
            extras=MappingProxyType({k: v[rows.to(v.device)] for k, v in self.extras.items()}),
        )

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description: method, params, cost, and per-sample numbers."""
        out: dict[str, Any] = {"method": self.method, "params": dict(self.params), "cost": self.cost.as_dict()}
        if self.classes is not None:
            out["classes"] = [int(c) for c in self.classes]
        for name in ("scores", "completeness_gap"):
            value = getattr(self, name)
            if value is not None:
                out[name] = [float(v) for v in value.detach().cpu()]
        for name, value in self.extras.items():
            out[name] = [float(v) for v in value.detach().cpu().reshape(len(self), -1)[:, 0]]
        return out
