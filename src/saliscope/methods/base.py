"""The one abstraction every method shares: ``explain(x, target) -> Explanation``."""

from __future__ import annotations

import copy
import traceback
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ..core.chunking import Chunker
from ..core.cost import CostMeter
from ..core.errors import InputError, TargetError
from ..core.explanation import Explanation
from ..core.model_state import explaining, model_device, model_dtype
from ..core.targets import BoundTarget, EntryRecorder, Target, TargetLike, as_target
from ..core.validation import check_batch, check_finite_attributions

Precision = Literal["auto", "float32", "float64"]
_LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass
class Attribution:
    """What a method's :meth:`Explainer._attribute` hands back to :meth:`Explainer.explain`."""

    attributions: Tensor
    scores: Tensor | None = None
    completeness_gap: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # per-call parameters, e.g. the seed drawn


class Explainer(ABC):
    """Base class: subclasses implement :meth:`_attribute`; :meth:`explain` does everything around it.

    Around every call it: checks the batch, turns the user's target into a target object, puts the model
    in eval mode with frozen parameters (restored afterwards, also on error), resolves the target against
    the clean output when needed, meters passes / time / memory, and rejects NaN or Inf attributions.

    Args:
        model: any ``nn.Module`` mapping ``(B, C, H, W)`` to ``(B, num_classes)`` scores.
        chunk_size: rows of work per model call; default chosen from ``memory_budget``.
        memory_budget: bytes of activations per chunk; default per device (see ``core.chunking``).
        precision: ``"auto"`` computes half / bfloat16 models in float32 (on a converted copy, made
            once), other models in their own dtype; ``"float32"`` / ``"float64"`` force a dtype.
    """

    name: ClassVar[str]
    #: Whether the method only differentiates the model's output with respect to its input (no hook, no
    #: layer), so that a long run may use the batch-norm-folded copy of the model, the same function.
    on_folded_copy: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        *,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        precision: Precision = "auto",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"expected an nn.Module, got {type(model).__name__}", "pass the model itself")
        if chunk_size is not None and chunk_size < 1:
            raise InputError(f"chunk_size must be >= 1, got {chunk_size}", "omit it to choose automatically")
        if precision not in ("auto", "float32", "float64"):
            raise InputError(f"unknown precision {precision!r}", "use 'auto', 'float32' or 'float64'")
        self.model = model
        self.precision: Precision = precision
        self.chunker = Chunker(chunk_size=chunk_size, memory_budget=memory_budget)
        self._converted: nn.Module | None = None

    # -- what subclasses provide -------------------------------------------------------------------
    @abstractmethod
    def _attribute(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        """Attributions ``(B, C|1, H, W)`` for a prepared batch ``x`` (compute dtype, model device)."""

    def params(self) -> dict[str, Any]:
        """The method's parameters, JSON-friendly; recorded in every Explanation."""
        return {"precision": self.precision, "chunk_size": self.chunker.chunk_size}

    @property
    def rows_per_sample(self) -> int:
        """Model evaluations per input sample (IG: its steps); wrappers use it to size their chunks."""
        return 1

    def chunk_key(self, x: Tensor) -> tuple[object, ...]:
        """What the measured cost of one row depends on: the kind of pass, the sample shape, dtype, device."""
        return ("autograd", tuple(x.shape[1:]), x.dtype, x.device.type)

    def samples_per_chunk(self, x: Tensor) -> int | None:
        """How many input samples fit one chunk of this method, once a row's cost is known."""
        rows = self.chunker.rows_per_chunk(self.chunk_key(x), x.device)
        return None if rows is None else max(1, rows // self.rows_per_sample)

    # -- the public verb ---------------------------------------------------------------------------
    def explain(self, x: Tensor, target: TargetLike = None) -> Explanation:
        """Explain a batch.

        Args:
            x: ``(B, C, H, W)`` preprocessed batch; it is never modified.
            target: a :class:`~saliscope.Target`, a class index, a label name, ``"predicted"`` or None
                (the predicted class), or one index per sample.

        Returns:
            An :class:`~saliscope.Explanation` with attributions on ``x``'s device.
        """
        return self._explain(x, [target])[0]

    def explain_each(self, x: Tensor, targets: Sequence[TargetLike]) -> list[Explanation]:
        """One explanation per target for the same batch, in one call: K maps per image.

        ``targets`` are anything :meth:`explain` takes (``[281, 285, "tabby"]``, ``top_k_targets(3)``).
        Methods that can share work across targets do (the CAMs run the forward pass once and one
        backward per target); the others explain each target in turn. Every explanation carries the
        cost of the whole call, and ``params["targets_in_call"]`` says how many maps shared it.
        """
        if len(targets) == 0:
            raise TargetError("no targets given", "pass at least one class, e.g. [281]")
        return self._explain(x, list(targets))

    def _explain(self, x: Tensor, targets: list[TargetLike]) -> list[Explanation]:
        x = check_batch(x)
        labels = getattr(self.model, "labels", None)
        target_objs = [as_target(t, labels=labels) for t in targets]
        net = self.compute_model()
        device = model_device(net)
        # The compute model is the model itself unless it is a converted (float32) copy; guard both.
        guard_copy = explaining(net) if net is not self.model else nullcontext()
        with explaining(self.model), guard_copy, CostMeter(device) as meter:
            xin = x.detach().to(device=device, dtype=self.compute_dtype(x))
            clean: list[Tensor] = []  # the clean output, computed at most once for all targets
            bound = [self._bind(net, xin, t, meter, clean) for t in target_objs]
            # Scored through recorders, so that each explanation can say which output entry it read.
            recorders = [EntryRecorder(b) for b, _ in bound]
            try:
                results = self._attribute_many(net, xin, list(recorders), meter)
            except BaseException as exc:
                # A chunk planner measures its first chunk under a torch mode or saved-tensor hooks held open
                # across a generator's yield. The traceback keeps that generator alive, so torch's stacks would
                # keep them for as long as the error is kept (a notebook keeps the last one), slowing and
                # breaking every later call. Freeing the finished frames closes the generator now, in order.
                traceback.clear_frames(exc.__traceback__)
                raise
        assert meter.cost is not None
        shared = {"targets_in_call": len(targets)} if len(targets) > 1 else {}
        return [
            self._explanation(x, r, b, s, meter, {**shared, **_read_from(rec, clean)})
            for r, (b, s), rec in zip(results, bound, recorders, strict=True)
        ]

    def _attribute_many(
        self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter
    ) -> list[Attribution]:
        """Attributions for several targets; override to share passes between them."""
        return [self._attribute(net, x, t, meter) for t in targets]

    def _explanation(
        self,
        x: Tensor,
        result: Attribution,
        bound: BoundTarget,
        scores: Tensor | None,
        meter: CostMeter,
        shared: dict[str, Any],
    ) -> Explanation:
        assert meter.cost is not None
        attributions = result.attributions.detach().to(x.device)
        check_finite_attributions(attributions, self.name)
        return Explanation(
            attributions=attributions,
            target=bound,
            method=self.name,
            params=MappingProxyType({**self.params(), **result.params, **shared}),
            cost=meter.cost,
            scores=_to(result.scores if result.scores is not None else scores, x.device),
            completeness_gap=_to(result.completeness_gap, x.device),
            extras=MappingProxyType({k: v.detach().to(x.device) for k, v in result.extras.items()}),
            inputs=x.detach(),  # a view, not a copy: only for drawing the map over its input
            preprocess=getattr(self.model, "preprocess", None),
            labels=getattr(self.model, "labels", None),
        )

    # -- shared machinery --------------------------------------------------------------------------
    def compute_dtype(self, x: Tensor) -> torch.dtype:
        if self.precision == "float64":
            return torch.float64
        if self.precision == "float32":
            return torch.float32
        dtype = model_dtype(self.model)
        if dtype is None or dtype in _LOW_PRECISION:
            return torch.float32
        return dtype

    def compute_model(self) -> nn.Module:
        """The model itself, or a copy converted to the compute dtype (made once, then reused)."""
        dtype = model_dtype(self.model)
        wanted = {"float32": torch.float32, "float64": torch.float64}.get(self.precision)
        if wanted is None:
            wanted = torch.float32 if dtype in _LOW_PRECISION else dtype
        if dtype is None or dtype == wanted:
            return self.model
        if self._converted is None:
            # A converted copy keeps the user's model untouched; its state is guarded like the original.
            self._converted = copy.deepcopy(self.model).to(wanted)
        else:
            # The user's weights may have changed since the copy was made (fine-tuning between calls).
            with torch.no_grad():
                for mine, theirs in zip(
                    self._converted.state_dict().values(), self.model.state_dict().values(), strict=True
                ):
                    mine.copy_(theirs)
        return self._converted

    def _bind(
        self, net: nn.Module, x: Tensor, target: Target | BoundTarget, meter: CostMeter, clean: list[Any]
    ) -> tuple[BoundTarget, Tensor | None]:
        batch = int(x.shape[0])
        if isinstance(target, BoundTarget):
            if target.batch_size != batch:
                raise TargetError(
                    f"the target is bound to {target.batch_size} samples, the batch has {batch}",
                    "bind the target to this batch or pass an unbound target",
                )
            return target, None
        if not target.needs_output:
            return target.bind(None, batch), None
        if not clean:
            clean.append(self.forward_chunked(net, x, meter))
        output = clean[0]
        bound = target.bind(output, batch)
        return bound, bound(output).detach()

    def forward_chunked(self, net: nn.Module, x: Tensor, meter: CostMeter) -> Tensor:
        """``net(x)`` without autograd, in chunks no bigger than this method's own (a forward saves less)."""
        n = int(x.shape[0])
        rows = self.chunker.rows_per_chunk(self.chunk_key(x), x.device) or n
        outputs = []
        with torch.no_grad():
            for start in range(0, n, rows):
                chunk = x[start : start + rows]
                outputs.append(net(chunk))
                meter.forward(int(chunk.shape[0]))
        return outputs[0] if len(outputs) == 1 else concat_outputs(outputs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def _read_from(recorder: EntryRecorder, clean: list[Any]) -> dict[str, Any]:
    """``{"output": entry}`` when the scores came from an entry of the output (``"logits"``), else ``{}``."""
    if recorder.seen:
        entry = recorder.seen[0]
    elif clean:  # a method that never scored (a class-agnostic map): the entry the clean output offers
        entry = recorder.output_entry(clean[0])
    else:
        entry = None
    return {} if entry is None else {"output": entry}


def concat_outputs(parts: list[Any]) -> Any:
    """Join chunked model outputs: tensors along the batch, dicts and tuples entry by entry, and lists of
    per-image results (a detector's dicts) end to end."""
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat(parts)
    if isinstance(first, dict):
        return {k: concat_outputs([p[k] for p in parts]) for k in first}
    if isinstance(first, tuple):
        return tuple(concat_outputs(list(items)) for items in zip(*parts, strict=True))
    if isinstance(first, list):
        return [item for p in parts for item in p]
    raise TypeError(f"cannot join model outputs of type {type(first).__name__}")


def _to(t: Tensor | None, device: torch.device) -> Tensor | None:
    return None if t is None else t.detach().to(device)
