"""Which engine runs a data-set tool, and what the Ray engine may use. Imports nothing of Ray.

- ``"local"`` (the default): this process, one batch after another, reading one batch ahead.
- ``"ray"``: a Ray cluster (Ray Data reads and decodes the images, an actor pool runs the model); with no
  address, a local Ray instance started for the run and shut down after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from ...core.errors import SaliscopeError

Engine = Literal["local", "ray"]
ENGINES: tuple[str, ...] = get_args(Engine)
INSTALL_RAY = 'pip install -e ".[ray]"'


class EngineError(SaliscopeError):
    """An engine that cannot run as asked (not installed, resources the cluster does not have)."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide the Ray engine runs.

    Args:
        address: a running cluster's address (``"auto"``, ``"ray://head:10001"``, ``"10.0.0.1:6379"``):
            connect, and leave the cluster running at the end. None: start a local instance sized to this
            machine and shut it down at the end (also on Ctrl-C and on errors). When Ray is already
            initialised in this process (``ray.init()`` by the caller), that instance is used and left running.
        workers: actors in the pool, one model each. Default: one per GPU when the actors take GPUs,
            otherwise as many as fit beside the image readers.
        cpus_per_worker: CPUs each actor reserves (fractions allowed); the model uses that many threads.
        gpus_per_worker: GPUs each actor reserves (fractions share a GPU). Default: 1 on a cluster with
            GPUs, 0 without.
    """

    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float | None = None
    gpus_per_worker: float | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise EngineError(f"workers must be at least 1, got {self.workers}", "use e.g. workers=2")
        for name in ("cpus_per_worker", "gpus_per_worker"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise EngineError(f"{name} must be a number >= 0, got {value}", f"use e.g. {name}=1")
        if self.cpus_per_worker == 0 and not self.gpus_per_worker:
            raise EngineError(
                "a worker with no CPU and no GPU cannot run a model",
                "give each worker CPUs (cpus_per_worker=1) or a GPU (gpus_per_worker=1)",
                "give each worker CPUs (--cpus-per-worker 1) or a GPU (--gpus-per-worker 1)",
            )


def check_engine(engine: str) -> Engine:
    """``engine`` as an :data:`Engine`; for ``"ray"``, also that Ray (with Ray Data) is installed."""
    if engine not in ENGINES:
        raise EngineError(f"unknown engine {engine!r}", "use 'local' or 'ray'", "use --engine local or --engine ray")
    if engine == "ray":
        require_ray()
    return engine  # type: ignore[return-value]


def require_ray() -> None:
    """Raise a one-line :class:`EngineError` naming the extra to install when Ray or Ray Data is missing."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise EngineError(
            "the Ray engine needs Ray with Ray Data, which is not installed",
            f'install the optional extra: {INSTALL_RAY} (from PyPI: pip install "saliscope[ray]")',
        ) from exc
