"""What every metric needs: a map out of an explanation, and target scores of many altered inputs.

Metrics are plain functions (see the package docstring). They share :func:`scoring`: a block inside which
the model is guarded exactly as an explainer guards it (eval mode, frozen parameters, restored in
``finally``), the target is bound once against the clean output, and :meth:`Scorer.scores` pushes any
number of altered inputs through the model in memory-bounded, forward-only chunks — never one call per
input, never all of them at once — counting every pass into a :class:`~saliscope.Cost`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..core.chunking import Chunker
from ..core.cost import Cost, CostMeter
from ..core.errors import InputError, ModelOutputError
from ..core.explanation import Explanation
from ..core.inference_copy import net_for_run
from ..core.memory_layout import in_preferred_layout
from ..core.model_state import explaining, model_device
from ..core.targets import BoundTarget, TargetLike, as_target, logits_of
from ..core.validation import check_batch
from ..methods.base import concat_outputs

Attribution = Explanation | Tensor
# make_rows(start, stop) -> (inputs (R, C, H, W), image index of each row (R,) long): the rows of work.
MakeRows = Callable[[int, int], tuple[Tensor, Tensor]]


def saliency_map(attribution: Attribution) -> Tensor:
    """``(B, 1, H, W)`` float map: an Explanation's signed saliency, or a tensor's channels summed.

    Metrics rank pixels by this map; pass ``e.saliency(evidence="absolute")`` (or any tensor) to rank
    by something else.
    """
    if isinstance(attribution, Explanation):
        return attribution.saliency().float()
    if not isinstance(attribution, Tensor):
        raise InputError(
            f"expected an Explanation or a tensor map, got {type(attribution).__name__}",
            "pass the Explanation returned by explain(), or a (B, 1|C, H, W) tensor",
        )
    if attribution.ndim == 3:
        attribution = attribution.unsqueeze(1)
    if attribution.ndim != 4:
        raise InputError(f"a map must be (B, 1|C, H, W), got {tuple(attribution.shape)}", "pass e.attributions")
    return attribution.detach().float().sum(1, keepdim=True)


def check_map_fits(x: Tensor, saliency: Tensor) -> None:
    if saliency.shape[0] != x.shape[0] or saliency.shape[-2:] != x.shape[-2:]:
        raise InputError(
            f"the map {tuple(saliency.shape)} does not fit the batch {tuple(x.shape)}",
            "pass the explanation of this very batch (same images, same size)",
        )


def explained_target(attribution: Attribution, target: TargetLike) -> TargetLike:
    """The target to score: the one given, else the one the explanation explained, else the predicted class."""
    if target is not None:
        return target
    if isinstance(attribution, Explanation):
        return attribution.target
    return None


@dataclass
class Scorer:
    """Target scores of altered inputs; made by :func:`scoring`."""

    model: nn.Module
    target: BoundTarget
    clean_scores: Tensor  # (B,) the target's score on the clean batch, on the model's device
    clean_output: Tensor | object
    meter: CostMeter
    chunker: Chunker
    device: torch.device
    dtype: torch.dtype
    probe: Tensor  # one clean row, on the model's device: what the inference copy is checked on

    def scores(self, make_rows: MakeRows, n_rows: int) -> Tensor:
        """``(n_rows,)`` target scores of the rows ``make_rows`` builds, chunk by chunk, without autograd.

        Row ``r``'s score uses the target of the image ``make_rows`` names for it, so one call can mix
        rows of every image of the batch (as deletion curves over a batch do).
        """
        return self._run(make_rows, n_rows, top1=False)[0]

    def scores_and_top1(self, make_rows: MakeRows, n_rows: int) -> tuple[Tensor, Tensor | None]:
        """:meth:`scores`, and each row's top-1 class (None when the output is not ``(R, K)`` class scores)."""
        return self._run(make_rows, n_rows, top1=True)

    def _run(self, make_rows: MakeRows, n_rows: int, *, top1: bool) -> tuple[Tensor, Tensor | None]:
        out: list[Tensor] = []
        classes: list[Tensor] | None = [] if top1 else None
        key = ("metric-forward", self.clean_scores.shape, self.dtype, self.device.type)
        # Made before the first span, where the chunker measures what one row of the passes costs.
        per_image = -(-n_rows // max(1, len(self.clean_scores)))
        net = net_for_run(self.model, self.probe, per_image, self.meter)
        spans = self.chunker.spans(n_rows, key=key, device=self.device, params=self.model.parameters, forward_only=True)
        with torch.no_grad():
            for start, stop in spans:
                inputs, sample = make_rows(start, stop)
                output = in_preferred_layout(self.model, inputs.to(self.device, self.dtype), net)
                self.meter.forward(stop - start)
                out.append(self.target.take(sample.cpu())(output).detach().float())
                if classes is not None:
                    classes = _append_top1(classes, output)
        scores = torch.cat(out) if out else torch.zeros(0, device=self.device)
        return scores, (torch.cat(classes) if classes else None)

    def outputs(self, inputs: Tensor) -> object:
        """The model's raw output for ``inputs``, chunked (for metrics that need more than the score)."""
        parts = []
        key = ("metric-forward", self.clean_scores.shape, self.dtype, self.device.type)
        with torch.no_grad():
            for start, stop in self.chunker.spans(
                int(inputs.shape[0]), key=key, device=self.device, params=self.model.parameters, forward_only=True
            ):
                parts.append(
                    in_preferred_layout(self.model, inputs[start:stop].to(self.device, self.dtype), self.model)
                )
                self.meter.forward(stop - start)
        return concat_outputs(parts)


def top1(output: object) -> Tensor | None:
    """``(B,)`` top-1 classes (CPU) of a ``(B, K)`` class-score output, or None for other outputs."""
    try:
        return logits_of(output).argmax(dim=1).cpu()
    except ModelOutputError:
        return None


def _append_top1(classes: list[Tensor] | None, output: object) -> list[Tensor] | None:
    if classes is None:
        return None
    found = top1(output)
    return None if found is None else [*classes, found]


@contextmanager
def scoring(
    model: nn.Module,
    x: Tensor,
    target: TargetLike = None,
    *,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> Iterator[Scorer]:
    """A :class:`Scorer` for ``model`` on the batch ``x``, the target bound against the clean output.

    After the block, ``scorer.meter.cost`` holds what the block cost (passes, seconds, peak memory).
    """
    x = check_batch(x)
    if not isinstance(model, nn.Module):
        raise InputError(f"expected an nn.Module, got {type(model).__name__}", "pass the model itself")
    labels = getattr(model, "labels", None)
    tobj = as_target(target, labels=labels)
    device = model_device(model)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), x.dtype)
    chunker = Chunker(chunk_size=chunk_size, memory_budget=memory_budget)
    with explaining(model), CostMeter(device) as meter:
        xin = x.detach().to(device, dtype)
        with torch.no_grad():
            clean = in_preferred_layout(model, xin, model)
        meter.forward(int(x.shape[0]))
        bound = tobj if isinstance(tobj, BoundTarget) else tobj.bind(clean, int(x.shape[0]))
        clean_scores = bound(clean).detach().float()
        yield Scorer(model, bound, clean_scores, clean, meter, chunker, device, dtype, xin[:1])


def finished_cost(scorer: Scorer) -> Cost:
    """The cost of a finished :func:`scoring` block."""
    assert scorer.meter.cost is not None, "read the cost after the scoring block has ended"
    return scorer.meter.cost
