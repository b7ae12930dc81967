"""Helpers that keep error messages to one readable line."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


def describe(exc: BaseException, limit: int = 160) -> str:
    """``"URLError: <first line of the message>"``, short enough for a one-line problem statement."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > limit:
        first = first[: limit - 1] + "…"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def short_list(items: Sequence[str], limit: int = 5) -> str:
    """``"a, b, c and 7 more"``."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def close_names(name: str, choices: Sequence[str], n: int = 4) -> str:
    """A short "did you mean" list for an error's fix line ("" when nothing is close)."""
    return ", ".join(difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5))


def mismatch(wrong_shape: Sequence[str], missing: Sequence[str], unexpected: Sequence[str], limit: int = 5) -> str:
    """``"shape mismatch: ...; missing keys: ...; unexpected keys: ..."`` for the non-empty lists ("" if none)."""
    parts = [
        f"{what}: {short_list(items, limit)}"
        for what, items in (("shape mismatch", wrong_shape), ("missing keys", missing), ("unexpected keys", unexpected))
        if items
    ]
    return "; ".join(parts)
