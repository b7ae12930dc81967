"""Targets: what score of the model's output an explanation is about.

A :class:`Target` says *which* score (a class a user names, the predicted class, the k-th ranked class).
It is resolved once, against the model's output on the clean input, into a :class:`BoundTarget` that holds
one fixed class per sample. Methods that evaluate the model on many perturbed copies (SmoothGrad, IG,
occlusion) score every copy against the bound target, so the class never drifts with the perturbation.

Plain ints, label strings and sequences are accepted only at the public edge (:func:`as_target`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from .errors import ModelOutputError, NonFiniteError, TargetError

ScoreSpace = Literal["logit", "probability", "log-probability"]
_SPACES: tuple[str, ...] = ("logit", "probability", "log-probability")


def _check_space(space: str) -> None:
    if space not in _SPACES:
        raise TargetError(f"unknown score space {space!r}", f"use one of {', '.join(_SPACES)}")


Key = str | int


def class_scores(output: object, batch_size: int | None = None) -> tuple[Tensor, Key | None]:
    """The ``(B, K)`` class scores in a model's output, and the entry they were read from (None: the output).

    Read, in this order: a tensor output itself; the ``logits`` entry of a mapping (Hugging Face's
    ``ModelOutput`` is one); the one 2-D tensor among the entries of a mapping, tuple or list (with
    ``batch_size`` rows, when it is given). Anything else raises :class:`ModelOutputError` listing what the
    output holds and how to pick the scores.
    """
    if isinstance(output, Tensor):
        return _two_dimensional(output), None
    if isinstance(output, Mapping):
        logits = output.get("logits")
        if isinstance(logits, Tensor):
            return _two_dimensional(logits, "logits"), "logits"
        entries: list[tuple[Key, object]] = list(output.items())
    elif isinstance(output, (tuple, list)):
        if output and all(isinstance(d, Mapping) and "boxes" in d for d in output):
            raise ModelOutputError(
                f"the model is a detector (it returned a {type(output).__name__} of detections), not a classifier",
                "explain one of its detections with saliscope.DetectionTarget(k), or a box with"
                " saliscope.BoxTarget(box, label)",
                "explain one of its detections with --detection K, or a box with --box x0,y0,x1,y1",
            )
        entries = list(enumerate(output))
    else:
        raise ModelOutputError(
            f"the model returned a {type(output).__name__}, not a tensor of class scores",
            "wrap the model so that forward() returns a (B, num_classes) tensor",
        )
    found = [
        (k, v)
        for k, v in entries
        if isinstance(v, Tensor) and v.ndim == 2 and (batch_size is None or v.shape[0] == batch_size)
    ]
    if len(found) == 1:
        return found[0][1], found[0][0]
    raise _ambiguous(output, entries, found)


def logits_of(output: object) -> Tensor:
    """The ``(B, K)`` class scores in a model output (see :func:`class_scores`)."""
    return class_scores(output)[0]


def _two_dimensional(scores: Tensor, key: Key | None = None) -> Tensor:
    if scores.ndim != 2:
        where = "tensor" if key is None else f"{key!r} entry"
        raise ModelOutputError(
            f"the model returned a {where} of shape {tuple(scores.shape)}, not (batch, num_classes)",
            "wrap the model so that forward() returns a (B, num_classes) tensor of class scores",
        )
    return scores


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return "×".join(str(d) for d in value.shape) or "scalar"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def _ambiguous(
    output: object, entries: Sequence[tuple[Key, object]], found: Sequence[tuple[Key, object]]
) -> ModelOutputError:
    kind = type(output).__name__
    listed = ", ".join(f"{k!r} ({_describe(v)})" for k, v in entries[:8])
    more = f" and {len(entries) - 8} more" if len(entries) > 8 else ""
    what = "several" if found else "no"
    first = (found or entries or [(0, None)])[0][0]
    if isinstance(output, Mapping):
        problem = f"the model returned a {kind} with {what} (batch, num_classes) tensors and no 'logits' entry"
        fix = f"pick the scores with a target, e.g. saliscope.OutputTarget({first!r}) (entries: {listed}{more})"
        cli_fix = f"wrap the model so that forward() returns its class scores (entries: {listed}{more})"
    else:
        problem = f"the model returned a {kind} with {what} (batch, num_classes) tensors"
        fix = (
            f"pick the scores with a target, e.g. saliscope.OutputTarget({first!r}), or a BoxTarget for a detector"
            f" (entries: {listed}{more})"
        )
        cli_fix = f"wrap the model so that forward() returns its class scores (entries: {listed}{more})"
    return ModelOutputError(problem, fix, cli_fix)


class BoundTarget(ABC):
    """A target resolved for a concrete batch: maps a model output to one score per sample."""

    @abstractmethod
    def __call__(self, output: object) -> Tensor:
        """Scores of shape ``(N,)`` for an output of N samples, in float32 or wider."""

    @abstractmethod
    def take(self, rows: Tensor) -> BoundTarget:
        """The target for a batch made of ``rows`` of the bound batch (repeats allowed).

        ``rows`` is a 1-D long tensor; methods that expand a batch into perturbed copies use it.
        """

    @property
    @abstractmethod
    def batch_size(self) -> int:
        """How many samples this target is bound to."""

    def output_entry(self, output: object) -> Key | None:
        """Which entry of ``output`` the scores are read from (a key or an index), None for the output itself
        or for targets that read the output whole. Recorded as ``Explanation.params["output"]``."""
        return None


class Target(ABC):
    """Which score to explain. Resolve it with :meth:`bind` before scoring."""

    @property
    def needs_output(self) -> bool:
        """Whether :meth:`bind` needs the model's output on the clean input (costs one forward pass)."""
        return False

    @abstractmethod
    def bind(self, output: Tensor | None, batch_size: int) -> BoundTarget:
        """Resolve against the clean output (``None`` when :attr:`needs_output` is False)."""


@dataclass(frozen=True)
class BoundClasses(BoundTarget):
    """One fixed class per sample, scored in a given space."""

    classes: Tensor  # (B,) long, on CPU
    space: ScoreSpace = "logit"

    def __post_init__(self) -> None:
        _check_space(self.space)

    @property
    def batch_size(self) -> int:
        return int(self.classes.numel())

    def take(self, rows: Tensor) -> BoundClasses:
        return BoundClasses(self.classes[rows.cpu()], self.space)

    def output_entry(self, output: object) -> Key | None:
        return class_scores(output, self.batch_size)[1]

    def __call__(self, output: object) -> Tensor:
        logits, _ = class_scores(output, self.batch_size)
        n, k = logits.shape
        if n != self.batch_size:
            raise TargetError(
                f"the target is bound to {self.batch_size} samples but the output has {n}",
                "bind the target to the batch you score (Target.bind) or use BoundTarget.take",
            )
        bad = (self.classes < 0) | (self.classes >= k)
        if bool(bad.any()):
            c = int(self.classes[bad][0])
            raise TargetError(
                f"class index {c} is out of range: the model has {k} classes (0..{k - 1})",
                "pick a class index below the number of classes, or a label name",
            )
        # Scores in float32 at least, so that a half-precision model does not round the target.
        scores = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        if self.space == "probability":
            scores = torch.softmax(scores, dim=1)
        elif self.space == "log-probability":
            scores = torch.log_softmax(scores, dim=1)
        picked = scores.gather(1, self.classes.to(scores.device).view(-1, 1)).squeeze(1)
        if not bool(torch.isfinite(picked.detach()).all()):
            raise NonFiniteError(
                "the model produced NaN or Inf scores for the target class",
                "check the input's preprocessing and the model's dtype (try float32)",
            )
        return picked


class EntryRecorder(BoundTarget):
    """``inner``, noting in ``seen`` which entry of the output its scores came from (on the first call).

    Explainers score through it so that an explanation can say what it read (``params["output"]``); copies
    made by :meth:`take` share ``seen``. Everything else it has (``classes``, ``boxes``, ...) is ``inner``'s;
    :func:`recorded` gives ``inner`` itself, for type checks.
    """

    def __init__(self, inner: BoundTarget, seen: list[Key | None] | None = None) -> None:
        self.inner = inner
        self.seen: list[Key | None] = [] if seen is None else seen

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    def take(self, rows: Tensor) -> EntryRecorder:
        return EntryRecorder(self.inner.take(rows), self.seen)

    def output_entry(self, output: object) -> Key | None:
        return self.inner.output_entry(output)

    def __call__(self, output: object) -> Tensor:
        scores = self.inner(output)
        if not self.seen:
            self.seen.append(self.inner.output_entry(output))
        return scores


def recorded(target: BoundTarget) -> BoundTarget:
    """The bound target an :class:`EntryRecorder` scores through (any other target as it is)."""
    return target.inner if isinstance(target, EntryRecorder) else target


@dataclass(frozen=True)
class ClassTarget(Target):
    """A class chosen by the user: one index for the whole batch, or one per sample."""

    index: int | tuple[int, ...]
    space: ScoreSpace = "logit"

    def __post_init__(self) -> None:
        _check_space(self.space)
        if isinstance(self.index, bool) or not isinstance(self.index, (int, tuple)):
            raise TargetError(f"a class index must be an int, not {self.index!r}", "pass e.g. target=281")

    def bind(self, output: Tensor | None, batch_size: int) -> BoundClasses:
        if isinstance(self.index, int):
            classes = torch.full((batch_size,), self.index, dtype=torch.long)
        else:
            if len(self.index) != batch_size:
                raise TargetError(
                    f"{len(self.index)} class indices given for a batch of {batch_size}",
                    "give one index for the whole batch or exactly one per image",
                )
            classes = torch.tensor(self.index, dtype=torch.long)
        return BoundClasses(classes, self.space)


@dataclass(frozen=True)
class PredictedClass(Target):
    """The class the model ranks ``rank``-th on the clean input (0 = top-1)."""

    rank: int = 0
    space: ScoreSpace = "logit"

    @property
    def needs_output(self) -> bool:
        return True

    def __post_init__(self) -> None:
        _check_space(self.space)
        if self.rank < 0:
            raise TargetError(f"rank must be >= 0, got {self.rank}", "use rank=0 for the top-1 class")

    def bind(self, output: Tensor | None, batch_size: int) -> BoundClasses:
        if output is None:
            raise TargetError("PredictedClass needs the model output to bind", "pass the clean output")
        logits, _ = class_scores(output, batch_size)
        if self.rank >= logits.shape[1]:
            raise TargetError(
                f"rank {self.rank} asked for but the model has only {logits.shape[1]} classes",
                "use a rank below the number of classes",
            )
        classes = logits.detach().float().topk(self.rank + 1, dim=1).indices[:, self.rank]
        return BoundClasses(classes.cpu(), self.space)


def top_k_targets(k: int, space: ScoreSpace = "logit") -> list[PredictedClass]:
    """Targets for the k best-ranked classes, one explanation each."""
    if k < 1:
        raise TargetError(f"k must be at least 1, got {k}", "use k=1 for the predicted class")
    return [PredictedClass(rank=r, space=space) for r in range(k)]


TargetLike = Target | BoundTarget | int | str | Sequence[int] | None


def label_index(label: str, labels: Sequence[str]) -> int:
    """Index of a label name: exact match first, then a case-insensitive match on any comma-separated alias."""
    if label in labels:
        return list(labels).index(label)
    wanted = label.strip().lower()
    for i, name in enumerate(labels):
        if wanted in (alias.strip().lower() for alias in name.split(",")):
            return i
    raise TargetError(f"unknown label {label!r}", _label_hint(label, labels))


def _words(text: str) -> set[str]:
    return set(text.lower().replace("-", " ").replace("_", " ").split())


def _label_hint(text: str, labels: Sequence[str]) -> str:
    """ "did you mean ...?": near spellings, then labels sharing a word ("cat" → "tiger cat"), then the rest."""
    import difflib

    by_lower = {name.lower(): name for name in labels}
    near = difflib.get_close_matches(text.lower(), list(by_lower), n=3, cutoff=0.85)  # "hot dog" → "hotdog"
    close = [by_lower[m] for m in difflib.get_close_matches(text.lower(), list(by_lower), n=3, cutoff=0.6)]
    words = {w for w in _words(text) if len(w) > 2}
    sharing = sorted((name for name in labels if words & _words(name)), key=lambda name: -len(words & _words(name)))
    suggestions = list(dict.fromkeys([by_lower[m] for m in near] + sharing[:3] + close + sharing[3:]))[:4]
    numbers = f"or pass a class index 0..{len(labels) - 1}"
    if not suggestions:
        return f"pass a label name exactly as the model spells it (e.g. {labels[0]!r}), {numbers}"
    return f"did you mean {', '.join(repr(s) for s in suggestions)}? ({numbers})"


def as_target(
    target: TargetLike,
    *,
    labels: Sequence[str] | None = None,
    space: ScoreSpace = "logit",
) -> Target | BoundTarget:
    """Turn what a user passes (int, label, 'predicted', sequence, None, Target) into a target object."""
    if isinstance(target, (Target, BoundTarget)):
        return target
    if target is None:
        return PredictedClass(space=space)
    if isinstance(target, bool):
        raise TargetError(f"target {target!r} is not a class", "pass a class index, a label or 'predicted'")
    if isinstance(target, int):
        return ClassTarget(int(target), space)
    if isinstance(target, str):
        text = target.strip()
        if text.lower() in ("predicted", "top1", "top-1"):
            return PredictedClass(space=space)
        if text.lstrip("-").isdigit():
            return ClassTarget(int(text), space)
        if labels is None:
            raise TargetError(
                f"target {target!r} is a label name but this model carries no labels",
                "pass a class index instead, or load the model with labels",
            )
        return ClassTarget(label_index(text, labels), space)
    if isinstance(target, Tensor):
        return ClassTarget(tuple(int(v) for v in target.reshape(-1).tolist()), space)
    if isinstance(target, Sequence):
        return ClassTarget(tuple(int(v) for v in target), space)
    raise TargetError(
        f"cannot use {type(target).__name__} as a target",
        "pass a class index, a label name, 'predicted', or a saliscope Target",
    )
