"""The result of every method: raw, signed attributions at input resolution, with what they cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .cost import Cost
from .targets import BoundClasses, BoundTarget
from .views import Evidence, Reduction, normalize, reduce_channels, select_evidence

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


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
        inputs: ``(B, C, H, W)`` the batch explained, in model space (the caller's tensor, not a copy); for
            display only.
        preprocess: the model's ``preprocess`` (when it has one): turns ``inputs`` back into pixels and places
            the map on the original photo (its crop box); for display only.
        labels: the model's class names (when it has them), for titles.

    In a notebook an explanation shows as its map over its input (``_repr_png_`` / ``_repr_html_``);
    :meth:`show` draws it as a matplotlib figure, over the original photo when given it.
    """

    attributions: Tensor
    target: BoundTarget
    method: str
    params: Mapping[str, Any]
    cost: Cost
    scores: Tensor | None = None
    completeness_gap: Tensor | None = None
    extras: Mapping[str, Tensor] = field(default_factory=lambda: MappingProxyType({}))
    inputs: Tensor | None = field(default=None, repr=False, compare=False)
    preprocess: Any = field(default=None, repr=False, compare=False)
    labels: Sequence[str] | None = field(default=None, repr=False, compare=False)

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
            inputs=pick(self.inputs),
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

    # ----- display (drawing lives in saliscope.viz; imported here on use, so core stays free of it) -----

    def show(
        self,
        image: Any = None,
        *,
        evidence: Evidence | None = None,
        ax: Axes | None = None,
    ) -> Figure:
        """The map as a matplotlib figure: over the original photo when given it, else over :attr:`inputs`.

        Args:
            image: the original photo (a path, PIL image or array; one per sample for a batch). The map is
                placed on the part the model saw (``preprocess.crop_box``, dashed), as the command line does.
                None: the map over the model's input.
            evidence: ``"positive"``, ``"negative"``, ``"signed"`` or ``"absolute"``; None: the method's own
                view (:func:`saliscope.viz.display_hint`).
            ax: draw into this axes (one sample); None: a new figure, which a notebook shows inline.

        Returns:
            The figure (``ax.figure`` when ``ax`` is given); save it with ``fig.savefig("map.png")``.
        """
        from ..viz.notebook import show_explanation

        return show_explanation(self, image, evidence=evidence, ax=ax)

    def _repr_png_(self) -> bytes:
        from ..viz.notebook import explanation_png

        return explanation_png(self)

    def _repr_html_(self) -> str:
        from ..viz.notebook import explanation_html

        return explanation_html(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """PNG and HTML from one drawing (a notebook asks for both)."""
        from ..viz.notebook import explanation_bundle

        return explanation_bundle(self)
