"""The audit's Ray engine: the same batches as the local engine, run on a Ray cluster.

The driver has listed the image files and cut them into numbered batches. Ray Data reads and decodes each
batch in a task (:func:`read_batch`: the local engine's :func:`~..dataset.load_batch`, so unreadable files
become failures the same way); an actor pool runs :class:`BatchAuditor` (the model and explainer arrive once
per actor, through the object store, and go to the actor's GPU when it has one), which runs the per-batch
step (:func:`~..step.audit_loaded`) and folds the batch into a partial :class:`~..stats.AuditStats` over the
classes it holds. Back on the driver, batches are taken in batch order, each once
(:func:`~.ray_pipeline.map_in_order`): their records appended to the store, their partial statistics merged
(:meth:`~..stats.AuditStats.merge`), the checkpoint written as the local engine writes it. A resumed audit
therefore continues with either engine.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...core.allocator import keep_freed_memory
from ..dataset import Item, LoadedBatch, load_batch
from ..progress import Progress
from ..stats import AuditStats
from ..step import BatchContext, audit_loaded, fold
from ..store import AuditStore, encode_records
from .options import RayOptions
from .pool import plan_pool
from .ray_pipeline import WorkerFailure, map_in_order
from .ray_session import ray_session


@dataclass(frozen=True)
class _Work:
    """What every actor needs, put in the object store once."""

    context: BatchContext
    classes: tuple[str, ...]
    n_regions: int
    grid: int
    threads: int


@dataclass(frozen=True)
class BatchOutput:
    """One batch's result as it travels home: its keys (to check it is the batch asked for), its records
    (encoded), its partial statistics (:meth:`AuditStats.state`), and what the local engine would have
    counted."""

    keys: tuple[str, ...]
    records: bytes  # the lines for records.jsonl (encoded on the worker: less for the driver to do)
    stats: dict[str, np.ndarray]
    audited: int
    method_seconds: float
    warnings: tuple[tuple[type[Warning], str], ...]
    worker: int  # the process that did it


def stream_on_ray(
    batches: list[list[Item]],
    ctx: BatchContext,
    stats: AuditStats,
    store: AuditStore,
    config: dict[str, Any],
    progress: Progress | None,
    options: RayOptions,
) -> tuple[int, float, dict[str, Any]]:
    """Audit ``batches`` on Ray; returns the images audited, the seconds the method's explain calls took
    (summed over the workers), and how the run was spread (cluster, workers, CPUs and GPUs each, and the
    seconds the driver spent taking the results in and writing checkpoints).

    Like the local engine, it checkpoints on the way out, also when interrupted, once a batch is done.
    """
    audited = 0
    method_seconds = 0.0
    committed = 0  # batches written by this call
    driver = checkpoints = 0.0
    consistent = True
    try:
        with ray_session(options.address) as cluster:
            import ray

            pool = plan_pool(options, cpus=cluster.cpus, gpus=cluster.gpus, batches=len(batches))
            work = ray.put(_Work(ctx, tuple(stats.classes), stats.n_regions, stats.grid, pool.threads))
            rows = [
                {"batch": k, "items": pickle.dumps([(str(i.path.absolute()), i.key, i.label) for i in batch])}
                for k, batch in enumerate(batches)
            ]
            pipeline = map_in_order(
                rows,
                read=read_batch,
                read_kwargs={"preprocess": ctx.preprocess},
                worker=BatchAuditor,
                worker_kwargs={"work": [work]},
                pool=pool,
            )
            # Closed here, before Ray stops: the pipeline must not outlive the session.
            with contextlib.closing(pipeline) as results:
                for k, row in results:
                    began = time.perf_counter()
                    out: BatchOutput | WorkerFailure = pickle.loads(row["result"])
                    if isinstance(out, WorkerFailure):
                        raise out.exception()
                    if out.keys != tuple(item.key for item in batches[k]):
                        raise RuntimeError(f"batch {k} came back with other images: please report this")
                    for category, message in out.warnings:
                        warnings.warn(message, category, stacklevel=2)
                    partial = AuditStats.from_state(out.stats)
                    consistent = False
                    store.append(out.records)
                    stats.merge(partial)
                    consistent = True
                    committed += 1
                    audited += out.audited
                    method_seconds += out.method_seconds
                    driver += time.perf_counter() - began
                    if store.due():
                        began = time.perf_counter()
                        store.checkpoint(stats, config)
                        checkpoints += time.perf_counter() - began
                    if progress is not None:
                        progress.advance(len(batches[k]))
            # The driver's own work per batch (unpickle, merge, append): what bounds the run's speed however
            # many workers there are. Checkpoints come on top, at most ~5% of the time (see store.py).
            spread = {
                "cluster": cluster.where,
                **pool.as_dict(),
                "driver_seconds": driver,
                "checkpoint_seconds": checkpoints,
            }
    finally:
        if consistent and committed:  # nothing done: the folder stays as it was (empty for a new audit)
            with contextlib.suppress(Exception):
                store.checkpoint(stats, config)
    return audited, method_seconds, spread


# ----- on the cluster ---------------------------------------------------------------------------------


def read_batch(row: dict[str, Any], *, preprocess: Any) -> dict[str, Any]:
    """A Ray Data task: read and preprocess one batch's files (a file that cannot be used is a failure)."""
    items = [Item(Path(path), key, label) for path, key, label in pickle.loads(row["items"])]
    loaded = load_batch(items, preprocess)
    images = (
        loaded.images.numpy()
        if loaded.images is not None
        else np.zeros((0, 3, preprocess.size, preprocess.size), np.float32)
    )
    meta = (
        [item.key for item in loaded.items],
        list(loaded.sizes),
        list(loaded.seen),
        [(item.key, reason) for item, reason in loaded.failed],
    )
    return {"batch": row["batch"], "items": row["items"], "images": images, "meta": pickle.dumps(meta)}


class BatchAuditor:
    """An actor of the pool: one model, loaded once; audits one batch per call."""

    def __init__(self, work: list[Any]) -> None:
        import ray

        found = work[0]
        self.work: _Work = ray.get(found) if isinstance(found, ray.ObjectRef) else found
        keep_freed_memory()  # this worker process is saliscope's own
        torch.set_num_threads(self.work.threads)
        if ray.get_gpu_ids() and torch.cuda.is_available():
            # Ray made the actor's GPU the only visible one.
            self.work.context.explainer.model.to("cuda")
        self.warmed = False

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        items = [Item(Path(path), key, label) for path, key, label in pickle.loads(row["items"])]
        by_key = {item.key: item for item in items}
        keys, sizes, seen, failed = pickle.loads(row["meta"])
        images = np.asarray(row["images"], np.float32)
        loaded = LoadedBatch(
            torch.from_numpy(images if images.flags.writeable else images.copy()) if len(keys) else None,
            tuple(by_key[k] for k in keys),
            tuple(tuple(s) for s in sizes),
            tuple(seen),
            tuple((by_key[k], reason) for k, reason in failed),
        )
        ctx = self.work.context
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                step = audit_loaded(ctx, items, loaded, warmed=self.warmed)
        except Exception as exc:
            # Sent home as a result, not raised: Ray's wrappers would not keep the exception a user reads.
            return {"batch": row["batch"], "result": pickle.dumps(WorkerFailure.of(exc))}
        self.warmed = step.warmed
        partial = AuditStats(
            [c for c in self.work.classes if c in {item.label for item in items}],
            n_regions=self.work.n_regions,
            grid=self.work.grid,
        )
        fold(partial, step.updates)
        notes = tuple(dict.fromkeys((w.category, str(w.message)) for w in caught))
        out = BatchOutput(
            tuple(item.key for item in items),
            encode_records(step.records),
            partial.state(),
            step.audited,
            step.method_seconds,
            notes,
            os.getpid(),
        )
        return {"batch": row["batch"], "result": pickle.dumps(out)}
