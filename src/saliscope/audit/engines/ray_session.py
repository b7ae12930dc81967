"""A Ray cluster for the length of a run: connect to one, or start a local instance and stop it afterwards.

With no address, a local instance sized to this machine is started and shut down at the end however the run
ends — an error, Ctrl-C (a second Ctrl-C during the shutdown is ignored: interrupting it is what leaves a
raylet behind) — so no raylet, GCS server or worker process outlives the run. With an address, the driver
connects and only disconnects at the end. Ray already initialised in this process (by the caller) is used
as it is and left running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .options import EngineError, require_ray


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster a run uses: its CPUs and GPUs, and whether this run started it (and stops it)."""

    cpus: float
    gpus: float
    owned: bool
    where: str  # "local instance", "existing instance" or the address connected to


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[Cluster]:
    """The Ray cluster to run on, for the duration of the ``with`` block.

    Ray already initialised in this process: that instance, left running. ``address``: connect, and only
    disconnect at the end (the cluster keeps running). Neither: start a local instance with this machine's
    CPUs (and its GPUs, which Ray detects), and shut it down at the end however the block ends.
    """
    require_ray()
    import ray

    if ray.is_initialized():
        yield _cluster("existing instance", owned=False)
        return
    try:  # a Ctrl-C or an error while Ray starts stops what has started
        with quiet_ray_logs():
            if address is None:
                with _workers_see(sys.path):
                    ray.init(
                        num_cpus=available_cpus(),
                        include_dashboard=False,
                        logging_level=logging.ERROR,
                        log_to_driver=False,
                    )
            else:
                _connect(address)
        yield _cluster("local instance" if address is None else address, owned=address is None)
    finally:
        _shutdown()


def _connect(address: str) -> None:
    import ray

    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    except Exception as exc:  # ConnectionError, ValueError, RuntimeError: Ray words them all
        token = "with token authentication, give this process the cluster's token (RAY_AUTH_MODE=token)"
        raise EngineError(
            f"cannot connect to the Ray cluster at {address!r} ({type(exc).__name__}:"
            f" {' '.join(str(exc).split())[:200]})",
            f"start one with `ray start --head` and pass its address (ray_address='auto' on its nodes); {token}",
            f"start one with `ray start --head` and pass its address (--ray-address auto on its nodes); {token}",
        ) from exc


def _cluster(where: str, *, owned: bool) -> Cluster:
    import ray

    resources = ray.cluster_resources()
    return Cluster(float(resources.get("CPU", 0.0)), float(resources.get("GPU", 0.0)), owned, where)


def _shutdown() -> None:
    """``ray.shutdown()``, shielded from a second Ctrl-C: interrupting it half-way is what leaves a raylet
    behind."""
    import ray

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        ray.shutdown()
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _workers_see(paths: list[str]) -> Iterator[None]:
    """Start Ray with PYTHONPATH holding this process's own import folders (not the interpreter's), so that
    a local instance's workers import what the driver imports: a model class defined next to the script."""
    base = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    extra = [
        p for p in paths if p and os.path.isdir(p) and not any(os.path.realpath(p).startswith(b + os.sep) for b in base)
    ]
    before = os.environ.get("PYTHONPATH")
    joined = os.pathsep.join(dict.fromkeys([*extra, *(before.split(os.pathsep) if before else [])]))
    if joined:
        os.environ["PYTHONPATH"] = joined
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


@contextlib.contextmanager
def quiet_ray_logs() -> Iterator[None]:
    """Ray's informational console lines (startup, execution plans, "progress bars disabled") hidden for the
    run. Ray Data's error reports are hidden too: every failure reaches the caller as an exception (and Ray
    Data's own log file in the session folder keeps the details)."""
    levels = {"ray": logging.WARNING, "ray.data": logging.CRITICAL}
    loggers = {logging.getLogger(name): level for name, level in levels.items()}
    saved = {lg: lg.level for lg in loggers}
    for lg, level in loggers.items():
        lg.setLevel(max(lg.level, level))
    try:
        yield
    finally:
        for lg, level in saved.items():
            lg.setLevel(level)
