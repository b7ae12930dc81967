"""Errors a user can cause. Each carries one line naming the problem and one naming the fix.

The CLI prints ``str(error)`` and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class SaliscopeError(Exception):
    """Base class: ``problem`` says what is wrong, ``fix`` what to do about it."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(problem if fix is None else f"{problem} — {fix}")


class TargetError(SaliscopeError, ValueError):
    """A target that does not fit the model's output (class out of range, unknown label, ...)."""


class ModelOutputError(SaliscopeError, TypeError):
    """The model returned something a target cannot turn into one score per sample."""


class NonFiniteError(SaliscopeError, FloatingPointError):
    """NaN or Inf in scores or attributions."""


class InputError(SaliscopeError, ValueError):
    """The input batch is not a float tensor of shape (B, C, H, W)."""


class ImageError(SaliscopeError, ValueError):
    """An image file or array that cannot be read or used."""


class ModelLoadError(SaliscopeError, RuntimeError):
    """A model that cannot be built or whose weights cannot be had."""


class MethodError(SaliscopeError, ValueError):
    """An unknown method name or a method that cannot run on this model."""
