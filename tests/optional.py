"""Tests that need an optional piece (Gradio, Chromium): skipped where it is missing — except under CI (``CI``
set), where they fail, because CI installs every piece and a missing one there is a broken setup, never a
silent pass."""

from __future__ import annotations

import importlib.util
import os

import pytest


def unavailable(reason: str) -> None:
    """Skip the test (locally) or fail it (under CI) for ``reason``."""
    if os.environ.get("CI"):
        pytest.fail(f"cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, install: str) -> None:
    if importlib.util.find_spec(name) is None:
        unavailable(f"{name} is not installed ({install})")


def require_gradio() -> None:
    require_module("gradio", 'pip install -e ".[app]"')
