"""What an explanation cost: model passes, wall time, peak memory."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import torch


@dataclass(frozen=True)
class Cost:
    """Cost of one explanation.

    ``forward_passes`` and ``backward_passes`` count *samples* pushed through the model (IG with 32 steps
    on one image is 32 forward and 32 backward passes, however they were chunked); ``batches`` counts the
    model calls that carried them. ``peak_memory_bytes`` is the rise of the CUDA allocator's peak on a
    GPU, or of the process's peak resident memory on Linux CPUs; ``None`` where neither can be read. On a CPU
    it counts fresh pages only: memory served from pages the process already holds (freed earlier and kept, as
    :func:`~saliscope.core.allocator.keep_freed_memory` and the ``saliscope`` command do) raises no resident
    memory, so it is a lower bound there.
    """

    forward_passes: int
    backward_passes: int
    batches: int
    seconds: float
    peak_memory_bytes: int | None

    def __add__(self, other: Cost) -> Cost:
        peaks = [p for p in (self.peak_memory_bytes, other.peak_memory_bytes) if p is not None]
        return Cost(
            self.forward_passes + other.forward_passes,
            self.backward_passes + other.backward_passes,
            self.batches + other.batches,
            self.seconds + other.seconds,
            max(peaks) if peaks else None,
        )

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "forward_passes": self.forward_passes,
            "backward_passes": self.backward_passes,
            "batches": self.batches,
            "seconds": self.seconds,
            "peak_memory_bytes": self.peak_memory_bytes,
        }


_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _rss_high_water() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _rss_now() -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_rss_high_water() -> bool:
    # Writing "5" resets VmHWM to the current RSS (Linux >= 4.0); without it the peak is since process start.
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class CostMeter:
    """Counts passes as a method reports them and measures time and peak memory around a block.

    One meter covers one call of ``explain``; a wrapper (SmoothGrad) passes its meter to the inner method.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.forward_passes = 0
        self.backward_passes = 0
        self.batches = 0
        self._t0 = 0.0
        self._base: int | None = None
        self._cuda = device.type == "cuda" and torch.cuda.is_available()
        self.cost: Cost | None = None

    def forward(self, samples: int) -> None:
        self.forward_passes += samples
        self.batches += 1

    def backward(self, samples: int) -> None:
        self.backward_passes += samples

    def __enter__(self) -> CostMeter:
        if self._cuda:
            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif _reset_rss_high_water():
            self._base = _rss_now()
        self._t0 = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._cuda:
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - self._t0
        peak: int | None = None
        if self._base is not None:
            high = torch.cuda.max_memory_allocated(self.device) if self._cuda else _rss_high_water()
            if high is not None:
                peak = max(0, high - self._base)
        self.cost = Cost(self.forward_passes, self.backward_passes, self.batches, seconds, peak)
