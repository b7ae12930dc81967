"""Errors a user can cause. Each carries one line naming the problem and one naming the fix.

The fix is written for Python callers; where the advice reads differently on the command line (an option
instead of a keyword argument), ``cli_fix`` holds that wording. The CLI prints :meth:`~SaliscopeError.cli_message`
and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

from typing import Any


class SaliscopeError(Exception):
    """Base class: ``problem`` says what is wrong, ``fix`` what to do about it in Python, ``cli_fix`` what to do
    about it on the command line (default: ``fix``)."""

    def __init__(self, problem: str, fix: str | None = None, cli_fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        self.cli_fix = cli_fix
        super().__init__(problem if fix is None else f"{problem} — {fix}")

    def cli_message(self) -> str:
        """The one line the command line prints: the problem and its command-line fix."""
        fix = self.cli_fix if self.cli_fix is not None else self.fix
        return self.problem if fix is None else f"{self.problem} — {fix}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt with all three parts when pickled (worker processes send errors home).
        return (type(self), (self.problem, self.fix, self.cli_fix))


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
