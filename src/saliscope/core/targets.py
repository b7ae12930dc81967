"""Targets: what score of the model's output an explanation is about.

A :class:`Target` says *which* score (a class a user names, the predicted class, the k-th ranked class).
It is resolved once, against the model's output on the clean input, into a :class:`BoundTarget` that holds
one fixed class per sample. Methods that evaluate the model on many perturbed copies (SmoothGrad, IG,
occlusion) score every copy against the bound target, so the class never drifts with the perturbation.

Plain ints, label strings and sequences are accepted only at the public edge (:func:`as_target`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from .errors import ModelOutputError, NonFiniteError, TargetError

ScoreSpace = Literal["logit", "probability", "log-probability"]
_SPACES: tuple[str, ...] = ("logit", "probability", "log-probability")


def _check_space(space: str) -> None:
    if space not in _SPACES:
        raise TargetError(f"unknown score space {space!r}", f"use one of {', '.join(_SPACES)}")


def logits_of(output: object) -> Tensor:
    """Check that a model output is a ``(B, K)`` tensor of class scores and return it."""
    if not isinstance(output, Tensor):
        kind = type(output).__name__
        if isinstance(output, dict):
            keys = ", ".join(repr(k) for k in output)
            first = next(iter(output), "key")
            fix = f"pick the scores with a target, e.g. saliscope.OutputTarget({first!r}) (keys: {keys})"
        elif isinstance(output, (tuple, list)) and output and all(isinstance(d, dict) and "boxes" in d for d in output):
            raise ModelOutputError(
                f"the model is a detector (it returned a {kind} of detections), not a classifier",
                "explain one of its detections with saliscope.DetectionTarget(k), or a box with"
                " saliscope.BoxTarget(box, label)",
                "explain one of its detections with --detection K, or a box with --box x0,y0,x1,y1",
            )
        elif isinstance(output, (tuple, list)):
            fix = "pick the scores with a target, e.g. saliscope.OutputTarget(0), or a BoxTarget for a detector"
        else:
            fix = "wrap the model so that forward() returns a (B, num_classes) tensor"
        raise ModelOutputError(f"the model returned a {kind}, not a tensor of class scores", fix)
    if output.ndim != 2:
        raise ModelOutputError(
            f"the model returned a tensor of shape {tuple(output.shape)}, not (batch, num_classes)",
            "wrap the model so that forward() returns a (B, num_classes) tensor of class scores",
        )
    return output


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


class Target(ABC):
    """Which score to explain. Resolve it with :meth:`bind` before scoring."""

    #: Whether :meth:`bind` needs the model's output on the clean input (costs one forward pass).
    needs_output: bool = False

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

    def __call__(self, output: object) -> Tensor:
        logits = logits_of(output)
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
    needs_output: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        _check_space(self.space)
        if self.rank < 0:
            raise TargetError(f"rank must be >= 0, got {self.rank}", "use rank=0 for the top-1 class")

    def bind(self, output: Tensor | None, batch_size: int) -> BoundClasses:
        if output is None:
            raise TargetError("PredictedClass needs the model output to bind", "pass the clean output")
        logits = logits_of(output)
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
