"""Sizing the Ray engine's actor pool: how many workers, with how many CPUs and GPUs each.

Ray Data's read tasks each ask for a CPU share (:data:`READ_CPUS`). A pool whose actors hold every CPU leaves
them none: the actors then wait forever for images no task can read (on 2 CPUs, two workers of one CPU each
hang). :func:`plan_pool` keeps the readers' share free and refuses, in one line, a request that cannot fit.
Imports nothing of Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .options import EngineError, RayOptions

READ_CPUS = 0.5  # CPU share each read task asks for; the pool leaves at least this much free
MIN_SHARE = 0.25  # least CPU share a worker without a GPU is given when the free CPUs are split
_EPS = 1e-9


@dataclass(frozen=True)
class Pool:
    """The actor pool: ``workers`` actors, each reserving ``cpus`` CPUs and ``gpus`` GPUs; the model uses
    ``threads`` threads. Read tasks reserve ``read_cpus`` each."""

    workers: int
    cpus: float
    gpus: float
    threads: int
    read_cpus: float = READ_CPUS

    def as_dict(self) -> dict[str, Any]:
        return {"workers": self.workers, "cpus_per_worker": self.cpus, "gpus_per_worker": self.gpus}


def plan_pool(options: RayOptions, *, cpus: float, gpus: float, batches: int) -> Pool:
    """Size the actor pool for a cluster of ``cpus`` CPUs and ``gpus`` GPUs and ``batches`` batches of work.

    Defaults: with GPUs, one actor per GPU; without, one CPU per actor and as many actors as fit once the
    readers' share (:data:`READ_CPUS`) is set aside. An actor count without a CPU count splits the free CPUs
    among the actors (at most 1 each). Never more actors than batches. Raises :class:`EngineError` when the
    request cannot fit: a pool that takes every CPU would starve the readers and hang.
    """
    free = cpus - READ_CPUS
    if free <= _EPS:
        raise EngineError(
            f"the Ray cluster has {_num(cpus)} CPUs: too few to read images and run a model",
            "use a cluster with at least 1 CPU, or the local engine",
            "use a cluster with at least 1 CPU, or --engine local",
        )
    gpw = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
    if gpw > 0 and gpus < gpw - _EPS:
        raise EngineError(
            f"each worker asks for {_num(gpw)} GPU, and the Ray cluster has {_num(gpus)} GPUs",
            "set gpus_per_worker=0, or connect to a cluster with GPUs (ray_address=...)",
            "leave out --gpus-per-worker, or connect to a cluster with GPUs (--ray-address)",
        )
    workers = options.workers
    if workers is None:
        if gpw > 0:
            workers = max(1, math.floor(gpus / gpw + _EPS))
        else:
            workers = max(1, math.floor(free / (options.cpus_per_worker or 1.0) + _EPS))
    cpw = options.cpus_per_worker
    if cpw is None:
        cpw = min(1.0, math.floor(free / workers * 100) / 100)
        if cpw < MIN_SHARE and not gpw:
            most = max(1, math.floor(free / MIN_SHARE + _EPS))
            raise EngineError(
                f"{workers} workers do not fit on a Ray cluster of {_num(cpus)} CPUs beside the image readers"
                f" (a worker without a GPU needs at least {_num(MIN_SHARE)} CPU)",
                f"use workers={most} or fewer, or set cpus_per_worker",
                f"use --workers {most} or fewer, or set --cpus-per-worker",
            )
    if workers * cpw > free + _EPS:
        fits = math.floor(free / workers * 100) / 100
        instead = f"{_num(fits)}" if fits > 0 else "a smaller share"
        raise EngineError(
            f"{workers} workers × {_num(cpw)} CPUs leave no CPU for reading the images: the Ray cluster has"
            f" {_num(cpus)} CPUs and the readers need {_num(READ_CPUS)}",
            f"use cpus_per_worker={instead} or fewer workers",
            f"use --cpus-per-worker {instead} or fewer --workers",
        )
    if gpw > 0 and workers * gpw > gpus + _EPS:
        raise EngineError(
            f"{workers} workers × {_num(gpw)} GPUs need more than the Ray cluster's {_num(gpus)} GPUs",
            f"use workers={max(1, math.floor(gpus / gpw + _EPS))}",
            f"use --workers {max(1, math.floor(gpus / gpw + _EPS))}",
        )
    return Pool(min(workers, max(batches, 1)), cpw, gpw, max(1, math.floor(cpw + _EPS)))


def _num(value: float) -> str:
    return f"{value:g}"
