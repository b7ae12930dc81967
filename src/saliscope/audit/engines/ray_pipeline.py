"""The Ray engine's pipeline, shared by the audit and the folder explanation.

The driver lists the work as numbered batches; Ray Data reads and decodes them in tasks, an actor pool (one
model per actor, loaded once) processes them, and the results come home in batch order, each batch once
(:class:`~.keyed.InOrder`). An actor whose process dies is restarted by Ray and its batch run again (at most
:data:`RETRIES` times); a batch's result is a pure function of the batch, so the retry changes nothing.
Exceptions raised on a worker travel home as results (:class:`WorkerFailure`): through Ray they would arrive
wrapped, their one-line message buried in a remote traceback.
"""

from __future__ import annotations

import contextlib
import pickle
import traceback
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from ...core.errors import SaliscopeError
from .keyed import InOrder
from .options import EngineError
from .pool import Pool
from .ray_session import quiet_ray_logs
from .stderr_filter import native_noise_dropped

RETRIES = 3  # times a batch is run again after its actor's process died


def map_in_order(
    rows: list[dict[str, Any]],
    *,
    read: Callable[..., dict[str, Any]],
    read_kwargs: dict[str, Any],
    worker: type,
    worker_kwargs: dict[str, Any],
    pool: Pool,
) -> Generator[tuple[int, dict[str, Any]], None, None]:
    """Run ``rows`` (each with a ``"batch"`` number ``0 .. n-1``) through ``read`` (a Ray Data task per row)
    and ``worker`` (a callable class, one instance per actor of ``pool``); yield ``(batch, result row)`` in
    batch order, each batch once.

    A :class:`~saliscope.core.errors.SaliscopeError` raised by ``read`` or ``worker`` is raised here as itself.
    """
    import ray.data
    from ray.data import ActorPoolStrategy

    order: InOrder[dict[str, Any]] = InOrder(len(rows))
    with _data_context(), quiet_ray_logs():
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
        with native_noise_dropped():
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

    lost: tuple[type[BaseException], ...] = (
        rx.RayActorError,
        rx.WorkerCrashedError,
        rx.NodeDiedError,
        rx.ObjectLostError,
        rx.OwnerDiedError,
        rx.OutOfMemoryError,
    )
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
