"""An audit's results on disk, written as it goes, so that an interrupted audit resumes losing nothing.

Two files in the output folder:

- ``records.jsonl``: one JSON line per image, in the order the images were audited::

      {"key": "pneumonia/0001.png", "class": "pneumonia", "explained": 1, "score": 4.2, "flat": false,
       "masses": [...one per region...], "map": "<base64 float16 G×G>", "size": [w, h], "seen": 1.0}

  or, for a file that could not be read, ``{"key", "class", "error"}``. Lines are only ever appended,
  a whole batch in one write.
- ``state.npz``: a checkpoint of the accumulators (:class:`~.stats.AuditStats`) together with the
  audit's settings and how many bytes of ``records.jsonl`` it covers. It is replaced atomically
  (temporary file + rename), after the records it covers have been flushed to disk.

On resume the records are cut back to what the checkpoint covers (a batch written after the last
checkpoint, or half a line from a kill, is dropped and simply done again), and the images named in the
remaining lines are skipped. Fed the same images in the same order, the accumulators then end exactly as
an uninterrupted run's.

Checkpoints are written after a batch whenever the time since the last one is at least 20 times what
the last one took, so they cost at most ~5 % of the audit however large the state; in practice that is
after every batch.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import SaliscopeError
from ..viz.files import atomic_write
from .stats import AuditStats

RECORDS = "records.jsonl"
STATE = "state.npz"
_OVERHEAD = 20.0  # checkpoint when (time since the last one) >= _OVERHEAD × (what the last one took)


def encode_map(grid_map: np.ndarray) -> str:
    """A ``(G, G)`` mass map as base64 of little-endian float16 (2 bytes a cell: 684 characters for 16×16)."""
    return base64.b64encode(np.asarray(grid_map, "<f2").tobytes()).decode("ascii")


def decode_map(text: str, grid: int) -> np.ndarray:
    """The ``(G, G)`` float64 map :func:`encode_map` stored."""
    return np.frombuffer(base64.b64decode(text), "<f2").astype(np.float64).reshape(grid, grid)


def encode_records(records: list[dict[str, Any]]) -> bytes:
    """Records as the lines of ``records.jsonl``: one JSON object per line, UTF-8."""
    return "".join(json.dumps(r, allow_nan=False, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


class AuditStore:
    """The records and checkpoint of one audit in ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.records_path = self.out / RECORDS
        self.state_path = self.out / STATE
        self._bytes = 0  # size of records.jsonl as written so far
        self._last_checkpoint = 0.0
        self._checkpoint_cost = 0.0

    def exists(self) -> bool:
        """Whether ``out`` holds (part of) an audit."""
        return self.records_path.exists() or self.state_path.exists()

    # -- starting ----------------------------------------------------------------------------------
    def start(self, config: dict[str, Any], *, resume: bool) -> tuple[AuditStats | None, set[str]]:
        """Prepare to write. Returns the checkpointed accumulators (None: start afresh) and the keys done.

        Without ``resume`` an existing audit is an error (it is never overwritten silently); with it, the
        settings must match the checkpoint's.
        """
        if not resume and self.exists():
            raise SaliscopeError(
                f"{self.out} already holds an audit ({RECORDS})",
                "pass --resume to continue it, or choose another --out folder (or delete this one)",
            )
        self.out.mkdir(parents=True, exist_ok=True)
        stats, covered = None, 0
        if resume and self.state_path.exists():
            state, saved, covered = self._read_state()
            _check_same(saved, config, self.state_path)
            stats = AuditStats.from_state(state)
        size = self.records_path.stat().st_size if self.records_path.exists() else 0
        if size < covered:
            raise SaliscopeError(
                f"{self.records_path} is shorter than its checkpoint says ({size} < {covered} bytes)",
                "the folder was changed by hand or the machine crashed; start afresh in another --out folder",
            )
        if size > covered:
            with open(self.records_path, "r+b") as handle:  # drop what the checkpoint does not cover
                handle.truncate(covered)
        self._bytes = covered
        done = {record["key"] for record in self.records()}
        return stats, done

    def _read_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any], int]:
        try:
            with np.load(self.state_path, allow_pickle=False) as npz:
                state = {k: npz[k] for k in npz.files}
            meta = json.loads(str(state.pop("store.meta")))
        except (OSError, ValueError, KeyError) as exc:
            raise SaliscopeError(
                f"cannot read the audit checkpoint {self.state_path} ({type(exc).__name__}: {exc})",
                "start afresh in another --out folder",
            ) from exc
        return state, meta["config"], int(meta["records_bytes"])

    # -- writing -----------------------------------------------------------------------------------
    def append(self, records: list[dict[str, Any]] | bytes) -> None:
        """Append one batch's records in a single write: the records, or their lines as
        :func:`encode_records` made them (a worker elsewhere can do that part of the work)."""
        data = records if isinstance(records, bytes) else encode_records(records)
        if not data:
            return
        with open(self.records_path, "ab") as handle:
            handle.write(data)
        self._bytes += len(data)

    def due(self) -> bool:
        """Whether a checkpoint is due (see the module docstring)."""
        return time.perf_counter() - self._last_checkpoint >= _OVERHEAD * self._checkpoint_cost

    def checkpoint(self, stats: AuditStats, config: dict[str, Any]) -> None:
        """Flush the records to disk, then atomically replace the checkpoint that covers them."""
        t0 = time.perf_counter()
        if self.records_path.exists():
            with open(self.records_path, "rb+") as handle:
                os.fsync(handle.fileno())
        meta = {"config": config, "records_bytes": self._bytes}
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {**stats.state(), "store.meta": np.array(json.dumps(meta))}
        np.savez(buffer, **arrays)
        with atomic_write(self.state_path) as handle:
            handle.write(buffer.getvalue())
        self._last_checkpoint = time.perf_counter()
        self._checkpoint_cost = self._last_checkpoint - t0

    # -- reading -----------------------------------------------------------------------------------
    def records(self) -> Iterator[dict[str, Any]]:
        """Every stored record, in order, read line by line (memory flat in the number of records)."""
        if not self.records_path.exists():
            return
        with open(self.records_path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)


def _check_same(saved: dict[str, Any], config: dict[str, Any], where: Path) -> None:
    changed = [k for k in sorted(set(saved) | set(config)) if saved.get(k) != config.get(k)]
    if changed:
        details = "; ".join(f"{k}: was {_short(saved.get(k))}, now {_short(config.get(k))}" for k in changed[:3])
        raise SaliscopeError(
            f"the audit in {where.parent} was run with other settings ({details})",
            "resume with the same data folder, model and options, or start afresh in another --out folder",
        )


def _short(value: Any, limit: int = 60) -> str:
    """A setting's repr, cut to ``limit`` characters (a region list can run to hundreds)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
