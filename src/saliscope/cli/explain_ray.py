"""``saliscope explain FOLDER --engine ray``: the folder explanation on a Ray cluster.

The driver lists the images and names their output folders (as the local run does); Ray Data reads each
image in a task; an actor pool (one model and one set of explainers per actor, built once) explains and
renders each image exactly as the local run does (:func:`~.pipeline.explain_image`) and writes its files
atomically (:func:`~.pipeline.write`: all of an image's files or none). The records come home in the
images' order, each once, and the driver prints what the local run prints and writes the one
``summary.json``. Workers write the files themselves, so on a cluster of several machines ``--out`` must be
a folder every machine sees at the same path (a shared file system), as must the images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from .. import registry
from ..audit.engines.pool import plan_pool
from ..audit.engines.ray_pipeline import WorkerFailure, map_in_order
from ..audit.engines.ray_session import ray_session
from ..core.allocator import keep_freed_memory
from ..core.errors import SaliscopeError
from . import pipeline


@dataclass(frozen=True)
class _Work:
    """What every actor needs, put in the object store once."""

    model: nn.Module
    methods: tuple[str, ...]
    settings: pipeline.Settings
    target_index: int | None
    threads: int


@dataclass(frozen=True)
class ImageOutput:
    """One image's outcome as it travels home: the lines the local run prints for it, its warnings, and
    its summary record, or why it failed (with the exception itself when it can travel)."""

    lines: list[str]
    notes: list[str]
    record: dict[str, Any] | None
    reason: str | None = None
    failure: WorkerFailure | None = None


def explain_on_ray(
    sources: list[pipeline.Source],
    model: nn.Module,
    methods: list[str],
    settings: pipeline.Settings,
    target_index: int | None,
    *,
    out_line: Callable[[str], None],
    err_line: Callable[[str], None],
    debug: bool,
    progress: Callable[[list[pipeline.Source]], Any] | None,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Explain and write every source on Ray; returns the records and the failures, in the sources' order."""
    import ray.cloudpickle

    images: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    shown = settings.out
    # Workers run elsewhere (another folder, another machine): every path they use is absolute.
    settings = dataclasses.replace(settings, out=settings.out.absolute())
    with ray_session(settings.ray.address) as cluster:
        import ray

        pool = plan_pool(settings.ray, cpus=cluster.cpus, gpus=cluster.gpus, batches=len(sources))
        work = ray.put(_Work(model, tuple(methods), settings, target_index, pool.threads))
        rows = [{"batch": k, "source": ray.cloudpickle.dumps(_absolute(source))} for k, source in enumerate(sources)]
        pipeline = map_in_order(
            rows, read=read_source, read_kwargs={}, worker=SourceExplainer, worker_kwargs={"work": [work]}, pool=pool
        )
        with contextlib.closing(pipeline) as results:  # before Ray stops: it must not outlive the session
            iterator = progress(sources) if progress is not None else sources
            for source, (_k, row) in zip(iterator, results, strict=True):
                out: ImageOutput = pickle.loads(row["result"])
                for line in out.lines:
                    out_line(line)
                if out.record is None:
                    assert out.reason is not None
                    if out.failure is not None and (len(sources) == 1 or (debug and out.reason.startswith("internal"))):
                        raise out.failure.exception()
                    failures.append((source.path, out.reason))
                    err_line(f"error: {source.path}: {out.reason}")
                    continue
                for note in out.notes:
                    err_line(f"warning: {source.path}: {note}")
                images.append(out.record)
                out_line(f"  -> {shown / source.stem}{os.sep}")
    return images, failures


def _absolute(source: pipeline.Source) -> pipeline.Source:
    """An image file's source, read by its absolute path; other sources (images in memory, folders that
    failed to list) as they are."""
    path = Path(source.path)
    if not path.is_file():
        return source
    found = path.absolute()

    def read() -> Image.Image:
        from ..io import load_image

        return load_image(found)

    return pipeline.Source(source.path, source.stem, read)


# ----- on the cluster ---------------------------------------------------------------------------------


def read_source(row: dict[str, Any]) -> dict[str, Any]:
    """A Ray Data task: read one image (as the local run reads it), or keep why it cannot be read."""
    import ray.cloudpickle

    source: pipeline.Source = ray.cloudpickle.loads(row["source"])
    try:
        pixels = np.asarray(source.read())
        error = b""
    except Exception as exc:
        pixels = np.zeros((0, 0, 3), np.uint8)
        error = pickle.dumps(WorkerFailure.of(exc))
    return {"batch": row["batch"], "source": row["source"], "pixels": pickle.dumps(pixels), "error": error}


class SourceExplainer:
    """An actor of the pool: one model and its explainers, built once; explains and writes one image per call."""

    def __init__(self, work: list[Any]) -> None:
        import ray

        found = work[0]
        w: _Work = ray.get(found) if isinstance(found, ray.ObjectRef) else found
        keep_freed_memory()  # this worker process is saliscope's own
        torch.set_num_threads(w.threads)
        device = "cpu"
        if ray.get_gpu_ids() and torch.cuda.is_available():
            device = "cuda"  # Ray made the actor's GPU the only visible one
            w.model.to(device)
        self.model = w.model
        self.settings = dataclasses.replace(w.settings, device=device)
        self.explainers = {name: registry.create(name, w.model, w.settings.options) for name in w.methods}
        self.target_index = w.target_index

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        import ray.cloudpickle

        source: pipeline.Source = ray.cloudpickle.loads(row["source"])
        lines: list[str] = []
        try:
            if row["error"]:
                raise pickle.loads(row["error"]).exception()
            image = Image.fromarray(pickle.loads(row["pixels"]))
            given = pipeline.Source(source.path, source.stem, lambda: image)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                rendered = pipeline.explain_image(
                    given, self.model, self.explainers, self.settings, self.target_index, lines.append
                )
            notes = pipeline.captured([w for w in caught if issubclass(w.category, UserWarning)])
            rendered.record["warnings"] = notes
            pipeline.write(rendered, self.settings.out)
            out = ImageOutput(lines, notes, rendered.record)
        except SaliscopeError as exc:
            out = ImageOutput(lines, [], None, pipeline.one_line(str(exc)), WorkerFailure.of(exc))
        except Exception as exc:
            reason = f"internal error: {type(exc).__name__}: {pipeline.one_line(str(exc))}"
            out = ImageOutput(lines, [], None, reason, WorkerFailure.of(exc))
        return {"batch": row["batch"], "result": pickle.dumps(out)}
