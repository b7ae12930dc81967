"""The Ray side of the Ray engine, shared by the audit and the folder explanation.

- :func:`ray_session`: connect to a cluster, or start a local instance sized to this machine and shut it
  down at the end, also on Ctrl-C and on errors (no raylet, GCS or worker process is left behind).
- :func:`plan_pool`: how many actors, with how many CPUs and GPUs each, so that the actors never take the
  CPUs the readers need: Ray Data's read tasks wait for a free CPU share, and a pool holding every CPU would
  wait forever for images that are never read.
- :func:`map_in_order`: the pipeline. The driver lists the work as numbered batches; Ray Data reads and
  decodes them in tasks, an actor pool (one model per actor, loaded once) processes them, and the results
  come home in batch order, each batch once (:class:`~.keyed.InOrder`). An actor whose process dies is
  restarted by Ray and its batch run again (at most :data:`RETRIES` times); the batch's result is a pure
  function of the batch, so the retry changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ...core.errors import SaliscopeError
from .keyed import InOrder
from .options import EngineError, RayOptions, require_ray

READ_CPUS = 0.5  # CPU share each read task asks for; the pool leaves at least this much free
RETRIES = 3  # times a batch is run again after its actor's process died
MIN_SHARE = 0.25  # least CPU share a worker without a GPU is given when the free CPUs are split
_EPS = 1e-9


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster a run uses: its CPUs and GPUs, and whether this run started it (and stops it)."""

    cpus: float
    gpus: float
    owned: bool
    where: str  # "local instance", "existing instance" or the address connected to


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


def available_cpus() -> int:
    """CPUs this process may use (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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


# ----- the session ------------------------------------------------------------------------------------


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
    with _quiet_ray_logs():
        if address is None:
            with _workers_see(sys.path):
                ray.init(
                    num_cpus=available_cpus(),
                    include_dashboard=False,
                    logging_level=logging.ERROR,
                    log_to_driver=False,
                )
        else:
            try:
                ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
            except Exception as exc:  # ConnectionError, ValueError, RuntimeError: Ray words them all
                _shutdown()
                raise EngineError(
                    f"cannot connect to the Ray cluster at {address!r} ({type(exc).__name__}:"
                    f" {' '.join(str(exc).split())[:200]})",
                    "start one with `ray start --head` and pass its address (ray_address='auto' on its nodes)",
                    "start one with `ray start --head` and pass its address (--ray-address auto on its nodes)",
                ) from exc
    try:
        yield _cluster("local instance" if address is None else address, owned=address is None)
    finally:
        _shutdown()


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
def _quiet_ray_logs() -> Iterator[None]:
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


# Lines Ray's C++ core writes to the driver's stderr that say nothing to a user of this engine. Ray Data keeps
# the actors' constructor arguments alive for the whole run, which is what this warning is about.
_NATIVE_NOISE = (b"has constructor arguments in the object store and max_restarts > 0",)


@contextlib.contextmanager
def _native_noise_dropped() -> Iterator[None]:
    """Drop :data:`_NATIVE_NOISE` lines from this process's stderr (file descriptor 2) inside the block.

    Ray's core library writes them straight to the descriptor, past Python's ``sys.stderr``; a thread passes
    everything else through unchanged and at once (a progress bar's partial line too). Only on POSIX, and
    only when descriptor 2 is open.
    """
    if os.name != "posix":
        yield
        return
    try:
        original = os.dup(2)
    except OSError:
        yield
        return
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pass_through, args=(read_end, original), daemon=True, name="saliscope-stderr")
    pump.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last writer closes: the thread drains it and ends
        pump.join(timeout=5)
        os.close(original)


def _pass_through(source: int, target: int) -> None:
    pending = b""
    try:
        while True:
            chunk = os.read(source, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not any(n in line for n in _NATIVE_NOISE))
            if pending and not pending.startswith(b"["):  # not a log line of Ray's: no need to wait for its end
                kept, pending = kept + pending, b""
            if kept:
                _write_all(target, kept)
        if pending:
            _write_all(target, pending)
    except OSError:
        pass
    finally:
        os.close(source)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


# ----- the pipeline -----------------------------------------------------------------------------------


def map_in_order(
    rows: list[dict[str, Any]],
    *,
    read: Callable[..., dict[str, Any]],
    read_kwargs: dict[str, Any],
    worker: type,
    worker_kwargs: dict[str, Any],
    pool: Pool,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run ``rows`` (each with a ``"batch"`` number ``0 .. n-1``) through ``read`` (a Ray Data task per row)
    and ``worker`` (a callable class, one instance per actor of ``pool``); yield ``(batch, result row)`` in
    batch order, each batch once.

    A :class:`~saliscope.core.errors.SaliscopeError` raised by ``read`` or ``worker`` is raised here as itself.
    """
    import ray.data
    from ray.data import ActorPoolStrategy

    order: InOrder[dict[str, Any]] = InOrder(len(rows))
    with _data_context(), _quiet_ray_logs():
        ds: ray.data.Dataset = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
        ds = ds.map(read, fn_kwargs=read_kwargs, num_cpus=pool.read_cpus)
        with warnings.catch_warnings():
            # Retries are set through the remote arguments, which Ray 2.60 calls deprecated without a
            # named replacement for actor options; Ray Data's own default is to retry without end.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=Warning)
            ds = ds.map(
                worker,
                fn_constructor_kwargs=worker_kwargs,
                compute=ActorPoolStrategy(size=pool.workers),
                num_cpus=pool.cpus,
                num_gpus=pool.gpus or None,
                max_restarts=-1,
                max_task_retries=RETRIES,
            )
        with _native_noise_dropped():
            rows_out = iter(ds.iter_rows())
            try:
                for row in rows_out:
                    yield from order.offer(int(row["batch"]), row)
            except Exception as exc:
                found = saliscope_error(exc)
                if found is not None:
                    raise found from None
                if _lost_worker(exc):
                    raise EngineError(
                        f"Ray lost a worker {RETRIES + 1} times running batch {order.next} or next to it"
                        f" ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})",
                        "the results so far are kept (continue with resume=True); Ray's logs say why the worker"
                        " died (/tmp/ray/session_latest/logs): often memory — use fewer workers or smaller batches",
                        "the results so far are kept (continue with --resume); Ray's logs say why the worker died"
                        " (/tmp/ray/session_latest/logs): often memory — use fewer --workers or a smaller"
                        " --batch-size",
                    ) from exc
                raise
            finally:
                close = getattr(rows_out, "close", None)
                if close is not None:
                    close()  # stops the execution now, not when the iterator is collected
    if not order.done:
        raise RuntimeError(f"the Ray engine lost batches {order.missing()[:10]}: please report this")


@contextlib.contextmanager
def _data_context() -> Iterator[None]:
    """Ray Data set up for the run (results in order, no progress bars of its own), restored afterwards:
    the context is the process's, and may be the caller's."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    wanted = {"enable_progress_bars": False, "print_on_execution_start": False}
    saved = {name: getattr(ctx, name) for name in wanted if hasattr(ctx, name)}
    preserve = ctx.execution_options.preserve_order
    for name in saved:
        setattr(ctx, name, wanted[name])
    # In order, so that a record file and a report come out as the local engine's; InOrder checks it anyway.
    ctx.execution_options.preserve_order = True
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)
        ctx.execution_options.preserve_order = preserve


def _lost_worker(exc: BaseException) -> bool:
    """Whether Ray gave up because worker processes died (killed, out of memory, node lost), as opposed to
    code raising an exception."""
    from ray import exceptions as rx

    lost = (rx.RayActorError, rx.WorkerCrashedError, rx.NodeDiedError, rx.ObjectLostError, rx.OwnerDiedError)
    lost += (rx.OutOfMemoryError,)
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, lost):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def saliscope_error(exc: BaseException) -> SaliscopeError | None:
    """The :class:`SaliscopeError` a worker raised, found inside Ray's wrappers (``RayTaskError``, Ray Data's
    ``UserCodeException``), or None."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            # A RayTaskError wrapping a SaliscopeError is an instance of both: the original is its cause.
            stack.append(cause)
            continue
        if isinstance(e, SaliscopeError):
            return e
        stack.extend([e.__cause__, e.__context__])
        args = getattr(e, "args", ())
        stack.extend(a for a in args if isinstance(a, BaseException))
    return None


@dataclass(frozen=True)
class WorkerFailure:
    """An exception raised on a worker, sent home as a result: the exception itself (pickled, where it can
    be) and the worker's traceback. Raised through Ray, a :class:`SaliscopeError` would arrive wrapped in
    Ray's exceptions, its one-line message buried in a remote traceback."""

    error: bytes
    message: str
    trace: str

    @classmethod
    def of(cls, exc: BaseException) -> WorkerFailure:
        """The failure for ``exc``, being handled now (its traceback is read from the handler)."""
        try:
            data = pickle.dumps(exc)
            pickle.loads(data)
        except Exception:
            data = b""
        return cls(data, f"{type(exc).__name__}: {exc}", traceback.format_exc())

    def exception(self) -> BaseException:
        """The exception to raise on the driver; its cause shows where the worker raised it."""
        try:
            found = pickle.loads(self.error) if self.error else None
        except Exception:  # an exception that cannot be rebuilt here: its message still can
            found = None
        error = found if isinstance(found, BaseException) else RuntimeError(self.message)
        error.__cause__ = WorkerTraceback(self.trace)
        return error


class WorkerTraceback(Exception):
    """Where on a Ray worker an exception was raised (shown with ``--debug``)."""
