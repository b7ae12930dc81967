"""Run many rows of work (noise samples, path steps, perturbations) in memory-bounded chunks.

The chunk size comes from a memory budget divided by what one row costs. What one row costs is measured,
not guessed: the first chunk runs a single row while a ``saved_tensors_hooks`` pair adds up the bytes
autograd keeps for the backward pass. Forward-only work (occlusion, RISE, LIME) saves nothing for a
backward pass, so there the probe adds up the bytes of every tensor the row's torch calls create instead:
an upper bound on what the row holds at once. The figure is cached per key, so later calls skip it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

_ENV_BUDGET = "SALISCOPE_MEMORY_BUDGET_MB"
# On a CPU, throughput stops improving long before memory runs out: big batches spill out of cache and
# fault in fresh pages on every call. A few hundred MiB of activations per chunk measured fastest
# (bench/bench_gradients.py); on a GPU we use a share of what is free.
_CPU_BUDGET_BYTES = 384 * 2**20
# Forward-only work is probed by every tensor its row creates (an upper bound: most are freed at once), and ran
# fastest at a smaller budget: on the default model a 4 × 51-row deletion check took 1.77 s at 192 MiB (6 rows
# per chunk) and 2.19 s at 384 MiB (11 rows), 400 RISE masks 3.11 s at 256 MiB and 3.64 s at 384 MiB. With freed
# memory kept (core/allocator.py), 224, 512 and 1,024 MiB ran deletion checks, RISE and occlusion equally fast.
_CPU_FORWARD_BUDGET_BYTES = 224 * 2**20
_GPU_FREE_SHARE = 0.4


def default_budget(device: torch.device, *, forward_only: bool = False) -> int:
    """Bytes of activations one chunk may hold on ``device`` (env ``SALISCOPE_MEMORY_BUDGET_MB`` overrides);
    on a CPU less for ``forward_only`` work, which keeps less alive than its probe counts."""
    if os.environ.get(_ENV_BUDGET):
        return int(float(os.environ[_ENV_BUDGET]) * 2**20)
    if device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * _GPU_FREE_SHARE)
    return _CPU_FORWARD_BUDGET_BYTES if forward_only else _CPU_BUDGET_BYTES


class _SavedBytes:
    """Counts the bytes autograd saves for backward, once per tensor, ignoring frozen parameters."""

    def __init__(self, exclude: set[int]) -> None:
        self.total = 0
        self._seen: set[int] = set(exclude)

    def pack(self, tensor: Tensor) -> Tensor:
        # A row's own bytes, not its storage's: a saved slice of a big input batch costs only the slice.
        ptr = tensor.data_ptr()
        if ptr not in self._seen:
            self._seen.add(ptr)
            self.total += tensor.numel() * tensor.element_size()
        return tensor

    @staticmethod
    def unpack(tensor: Tensor) -> Tensor:
        return tensor


class CreatedBytes(TorchFunctionMode):
    """Counts the bytes of every tensor that torch calls create, once per tensor, ignoring ``exclude``.

    The tensors are kept alive until the count ends, so that a freed block handed out again is not
    mistaken for one already counted.
    """

    def __init__(self, exclude: set[int]) -> None:
        super().__init__()
        self.total = 0
        self._seen: set[int] = set(exclude)
        self._alive: list[Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, Tensor) and t.data_ptr() not in self._seen:
                self._seen.add(t.data_ptr())
                self._alive.append(t)
                self.total += t.numel() * t.element_size()
        return out


@dataclass
class Chunker:
    """Plans chunk spans over ``n_rows`` rows of work.

    ``chunk_size`` fixes the rows per chunk; otherwise ``memory_budget`` bytes (default: per device)
    divided by the measured bytes per row decides. Use :meth:`spans` and run each span's work in order.
    """

    chunk_size: int | None = None
    memory_budget: int | None = None
    _bytes_per_row: dict[tuple[object, ...], int] = field(default_factory=dict, repr=False)
    _forward_only: set[tuple[object, ...]] = field(default_factory=set, repr=False)

    def spans(
        self,
        n_rows: int,
        *,
        key: tuple[object, ...],
        device: torch.device,
        params: Callable[[], Iterable[Tensor]] | None = None,
        forward_only: bool = False,
    ) -> Iterator[tuple[int, int]]:
        """Yield ``(start, stop)`` spans covering ``range(n_rows)``.

        When the cost per row for ``key`` is unknown, the first span is a single row run under a
        saved-tensor counter (the consumer's work for that span runs while this generator is suspended
        inside the counting block). ``params`` (e.g. ``model.parameters``) lists tensors the counter must
        not charge to the row; it is only called then. ``forward_only`` work (run under ``torch.no_grad``)
        is probed by the bytes its torch calls create, since autograd saves nothing there; those tensors
        are kept alive until the first span ends, so the consumer must do only that span's own work in it.
        """
        if n_rows <= 0:
            return
        if self.chunk_size is not None:
            size = max(1, int(self.chunk_size))
            for start in range(0, n_rows, size):
                yield start, min(n_rows, start + size)
            return
        start = 0
        if forward_only:
            self._forward_only.add(key)
        if key not in self._bytes_per_row:
            exclude = {p.data_ptr() for p in (params() if params else ())}
            if forward_only:
                created = CreatedBytes(exclude)
                with created:
                    yield 0, 1
                self._bytes_per_row[key] = max(created.total, 1)
            else:
                counter = _SavedBytes(exclude)
                with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
                    yield 0, 1
                self._bytes_per_row[key] = max(counter.total, 1)
            start = 1
        size = max(1, self._budget(key, device) // self._bytes_per_row[key])
        # Even out the chunks: 50 rows at 32 per chunk run better as 25 + 25 than 32 + 18.
        remaining = n_rows - start
        if remaining > 0:
            n_chunks = -(-remaining // size)
            size = -(-remaining // n_chunks)
        while start < n_rows:
            stop = min(n_rows, start + size)
            yield start, stop
            start = stop

    def knows(self, key: tuple[object, ...]) -> bool:
        """Whether the cost of a row of ``key`` is known (measured or recorded)."""
        return key in self._bytes_per_row

    def record(self, key: tuple[object, ...], bytes_per_row: int) -> None:
        """Set the cost of a row of ``key`` measured by the caller, for work whose first row is not typical
        (a pass with a fixed part, where only the marginal cost of a row scales)."""
        self._bytes_per_row[key] = max(int(bytes_per_row), 1)

    def rows_per_chunk(self, key: tuple[object, ...], device: torch.device) -> int | None:
        """The planned rows per chunk for ``key`` if known (used by wrappers to size their batches)."""
        if self.chunk_size is not None:
            return self.chunk_size
        if key not in self._bytes_per_row:
            return None
        return max(1, self._budget(key, device) // self._bytes_per_row[key])

    def _budget(self, key: tuple[object, ...], device: torch.device) -> int:
        if self.memory_budget is not None:
            return self.memory_budget
        return default_budget(device, forward_only=key in self._forward_only)


def image_rows(t: Tensor, sample: Tensor) -> Tensor:
    """``t[sample]`` for a chunk whose row ``r`` belongs to image ``sample[r]`` (``sample`` a CPU long tensor).

    When every row is the same image (the usual chunk: rows run image by image) it is that image's row as a
    one-row view, which broadcasts against the chunk's masks without copying it once per row; otherwise the
    gathered rows.
    """
    first = int(sample[0])
    if bool((sample == first).all()):
        return t[first : first + 1]
    return t[sample.to(t.device)]
