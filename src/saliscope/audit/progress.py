"""How an audit reports its progress: every engine calls ``start`` once and ``advance`` per batch done."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, total: int, done: int) -> None: ...
    def advance(self, n: int) -> None: ...
