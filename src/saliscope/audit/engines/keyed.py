"""Per-batch results keyed by batch: each batch counted once, in batch order, however results arrive.

A distributed engine may deliver a batch's result twice (a worker died after finishing and its task was
run again) or out of order (workers run at different speeds). :class:`InOrder` takes results keyed by
batch number and releases them in order, each batch exactly once, so what is written and counted is the
same as in a run where nothing went wrong.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class InOrder(Generic[T]):
    """Results of batches ``0 .. n-1``, released in batch order, each once; later copies are dropped."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.next = 0  # the first batch not yet released
        self.duplicates = 0  # results dropped because their batch was already released or waiting
        self._waiting: dict[int, T] = {}

    def offer(self, batch: int, result: T) -> list[tuple[int, T]]:
        """Take one batch's result; return the results that are now next in order (possibly none)."""
        if not 0 <= batch < self.n:
            raise ValueError(f"batch {batch} is not one of this run's batches (0..{self.n - 1})")
        if batch < self.next or batch in self._waiting:
            self.duplicates += 1
            return []
        self._waiting[batch] = result
        ready = []
        while self.next in self._waiting:
            ready.append((self.next, self._waiting.pop(self.next)))
            self.next += 1
        return ready

    @property
    def done(self) -> bool:
        return self.next == self.n

    def missing(self) -> list[int]:
        """Batches not yet released."""
        return [k for k in range(self.next, self.n) if k not in self._waiting]
