"""Run an audit: stream a data folder through :func:`~.step.audit_loaded`, batch by batch, to a verdict.

Two engines run the batches; everything before and after them is shared:

- ``engine="local"`` (the default, :func:`_stream` here): this process. Reading runs one batch ahead in a
  background thread (image decoding overlaps the model).
- ``engine="ray"`` (:mod:`.engines.ray_audit`): a Ray cluster. Ray Data reads and decodes the images, an actor
  pool explains them (one model per actor), each batch comes home as its records and a partial
  :class:`~.stats.AuditStats`, merged here in batch order.

Results go to disk after every batch (:mod:`.store`), the accumulators keep a fixed size per class
(:mod:`.stats`), and at the end one streaming pass over the stored results gives the verdicts
(:mod:`.findings`) and the report (:mod:`.report`). What grows with the data set is the list of file
names and the records on disk, never the memory held per image. The output folder is locked for the
whole run (:class:`~saliscope.io.folder_lock.FolderLock`): a second run on it refuses instead of mixing
its records in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .. import registry
from ..core.errors import InputError, TargetError
from ..core.targets import label_index
from ..io.folder_lock import FolderLock
from ..methods.base import Explainer
from ..models.preprocess import Preprocess
from .batch import mass_view
from .dataset import Item, LoadedBatch, crop_warnings, interleave, load_batch, scan_image_folder, seen_warnings
from .engines.options import Engine, RayOptions, check_engine
from .findings import analyse
from .progress import Progress
from .regions import Region, standard_regions
from .report import build_summary, write_outputs
from .settings import AuditSettings
from .stats import AuditStats
from .step import BatchContext, audit_loaded, fold, records_of
from .store import AuditStore
from .verdicts import ClassVerdict, method_notes

__all__ = ["AuditOutcome", "AuditSettings", "Progress", "records_of", "run_audit"]


@dataclass
class AuditOutcome:
    """What a finished audit produced."""

    out: Path
    summary: dict[str, Any]
    summary_path: Path
    report_path: Path
    verdicts: list[ClassVerdict]
    failures: list[tuple[str, str]]
    audited_now: int  # images this call audited (the rest were done by an earlier, interrupted run)
    resumed: bool


def run_audit(
    data_dir: str | Path,
    model: nn.Module,
    *,
    out: str | Path,
    settings: AuditSettings | None = None,
    resume: bool = False,
    explainer: Explainer | None = None,
    preprocess: Preprocess | None = None,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
    model_spec: str | None = None,
    engine: Engine = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    gpus_per_worker: float | None = None,
) -> AuditOutcome:
    """Audit every image of the ImageFolder ``data_dir`` with ``model``; write the results to ``out``.

    ``explainer`` defaults to ``settings.method`` built for ``model``; ``preprocess`` to the model's own
    ``.preprocess``. Writes ``records.jsonl`` and ``state.npz`` as it goes, then ``summary.json`` and
    ``report.html``. With ``resume``, continues an interrupted audit in ``out`` (with either engine,
    whichever engine began it).

    ``engine="ray"`` runs the batches on a Ray cluster (see :class:`~.engines.options.RayOptions` for
    ``ray_address``, ``workers``, ``cpus_per_worker`` and ``gpus_per_worker``); the model, the explainer
    and the preprocessing travel to the workers pickled, so their classes must be importable there. The
    outputs are those of the local engine: the same records in the same order, the same verdicts.

    Raises :class:`~saliscope.io.folder_lock.FolderInUseError` when another run is writing to ``out``.
    """
    s = settings or AuditSettings()
    _check_settings(s)
    engine = check_engine(engine)
    cluster = RayOptions(ray_address, workers, cpus_per_worker, gpus_per_worker)
    if engine == "local" and cluster != RayOptions():
        raise InputError(
            "ray_address, workers, cpus_per_worker and gpus_per_worker apply to the Ray engine only",
            'pass engine="ray", or leave them out',
            "add --engine ray, or leave out the Ray options",
        )
    started = time.perf_counter()
    pre = preprocess if preprocess is not None else getattr(model, "preprocess", None)
    if not isinstance(pre, Preprocess):
        raise InputError(
            "the model carries no saliscope Preprocess (.preprocess)",
            "load it with saliscope.load_model(), or pass preprocess=Preprocess(size=..., ...)",
        )
    folder = scan_image_folder(data_dir)
    explainer = explainer if explainer is not None else registry.create(s.method, model, s.options)
    mass_view(explainer.name, s.evidence)  # a signed --evidence fails here, before any work
    regions = standard_regions(border=s.border, corner=s.corner, user=s.region)
    label_of = _label_indices(folder.classes, getattr(model, "labels", None), required=s.target == "label")
    say = warn or (lambda _text: None)
    for note in crop_warnings(pre) + method_notes(explainer):
        say(note)

    config = _config(folder.root, folder.classes, model, explainer, pre, s, regions)
    with FolderLock(out):
        store = AuditStore(Path(out))
        stats, done = store.start(config, resume=resume)
        resumed = stats is not None
        if stats is None:
            stats = AuditStats(folder.classes, n_regions=len(regions), grid=s.grid)
        order = interleave(folder.items, folder.classes)
        if s.limit is not None:
            order = order[: s.limit]
        todo = [item for item in order if item.key not in done]
        batches = [todo[i : i + s.batch_size] for i in range(0, len(todo), s.batch_size)]
        if progress is not None:
            progress.start(len(todo), len(order) - len(todo))

        context = BatchContext(explainer, regions, s, pre, label_of)
        streamed = time.perf_counter()
        run: dict[str, Any] = {"engine": engine}
        if engine == "ray" and batches:
            from .engines.ray_audit import stream_on_ray

            audited, method_seconds, spread = stream_on_ray(batches, context, stats, store, config, progress, cluster)
            run["ray"] = spread
        else:
            audited, method_seconds = _stream(batches, context, stats, store, config, progress)
        streamed = time.perf_counter() - streamed

        analyses = analyse(
            stats,
            regions,
            store.records(),
            thresholds=s.thresholds,
            spot=s.spot,
            top_n=s.top_n,
            input_size=(pre.size, pre.size),
        )
        failures, seen = _tally(store)
        notes = list(crop_warnings(pre)) + method_notes(explainer) + seen_warnings(seen)
        # The stream's time against its explain calls' own: the audit's overhead, measured in one run.
        run.update(
            {
                "seconds": 0.0,
                "stream_seconds": streamed,
                "method_seconds": method_seconds,
                "audited_now": audited,
                "resumed": resumed,
                "batch_size": s.batch_size,
            }
        )
        summary = build_summary(
            config=config,
            folder=folder,
            stats=stats,
            analyses=analyses,
            failures=failures,
            seen=seen,
            warnings=notes,
            settings=s,
            run=run,
            model=model,
            model_spec=model_spec,
            preprocess=pre,
        )
        summary["run"]["seconds"] = time.perf_counter() - started  # up to the report; writing it is not counted
        summary_path, report_path = write_outputs(Path(out), summary, analyses, stats, folder.root, pre)
    return AuditOutcome(
        Path(out), summary, summary_path, report_path, [a.verdict for a in analyses], failures, audited, resumed
    )


# ----- the local engine -------------------------------------------------------------------------------


def _stream(
    batches: list[list[Item]],
    ctx: BatchContext,
    stats: AuditStats,
    store: AuditStore,
    config: dict[str, Any],
    progress: Progress | None,
) -> tuple[int, float]:
    """Audit ``batches`` one after another; returns how many images were audited and the seconds the
    method's explain calls took. Checkpoints on the way out, also when interrupted, once a batch is done,
    unless the interruption fell between writing a batch and counting it."""
    audited = 0
    method_seconds = 0.0
    committed = 0  # batches written by this call
    consistent = True
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="saliscope-audit-read") as pool:
            pending: Future[LoadedBatch] | None = (
                pool.submit(load_batch, batches[0], ctx.preprocess) if batches else None
            )
            warmed = False
            for k, batch in enumerate(batches):
                assert pending is not None
                loaded = pending.result()
                pending = pool.submit(load_batch, batches[k + 1], ctx.preprocess) if k + 1 < len(batches) else None
                step = audit_loaded(ctx, batch, loaded, warmed=warmed)
                warmed = step.warmed
                method_seconds += step.method_seconds
                consistent = False
                store.append(step.records)
                fold(stats, step.updates)
                consistent = True
                committed += 1
                audited += step.audited
                if store.due():
                    store.checkpoint(stats, config)
                if progress is not None:
                    progress.advance(len(batch))
    finally:
        if consistent and committed:  # nothing done: the folder stays as it was (empty for a new audit)
            with contextlib.suppress(Exception):
                store.checkpoint(stats, config)
    return audited, method_seconds


# ----- helpers ----------------------------------------------------------------------------------------


def _check_settings(s: AuditSettings) -> None:
    if s.target not in ("predicted", "label"):
        raise InputError(f"unknown target {s.target!r}", "use 'predicted' or 'label'")
    if s.batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {s.batch_size}", "use e.g. --batch-size 32")
    if s.grid < 2:
        raise InputError(f"grid must be at least 2 cells, got {s.grid}", "use e.g. 16")
    if not s.spot or not all(0.0 < v <= 1.0 for v in s.spot):
        raise InputError(f"spot sizes {s.spot} must be in (0, 1]", "use e.g. (0.1, 0.2, 0.3)")
    if s.limit is not None and s.limit < 1:
        raise InputError(f"limit must be at least 1, got {s.limit}", "omit it to audit every image")


def _label_indices(classes: Sequence[str], labels: Sequence[str] | None, *, required: bool) -> dict[str, int] | None:
    """Each folder's class index in the model, when every folder names one of its labels; else None
    (an error when ``required``)."""
    if not labels:
        if required:
            raise TargetError(
                "--target label needs a model with labels, and this one has none",
                "use --target predicted, or load the model with its labels",
            )
        return None
    found: dict[str, int] = {}
    for name in classes:
        try:
            found[name] = label_index(name, labels)
        except TargetError as exc:
            if required:
                raise TargetError(
                    f"the class folder {name!r} is not one of the model's labels",
                    exc.fix or "rename the folder after a label, or use --target predicted",
                ) from exc
            return None
    return found


def _tally(store: AuditStore) -> tuple[list[tuple[str, str]], dict[str, float]]:
    """Failures in order, and how much of the images the model saw (one pass over the records)."""
    failures: list[tuple[str, str]] = []
    total, count, cropped = 0.0, 0, 0
    for record in store.records():
        if record.get("error") is not None:
            failures.append((record["key"], record["error"]))
            continue
        seen = float(record.get("seen", 1.0))
        total += seen
        count += 1
        cropped += int(seen < 0.999)
    return failures, {"images": count, "cropped": cropped, "mean": total / count if count else 1.0}


def _config(
    root: Path,
    classes: Sequence[str],
    model: nn.Module,
    explainer: Explainer,
    pre: Preprocess,
    s: AuditSettings,
    regions: Sequence[Region],
) -> dict[str, Any]:
    """What a resumed audit must share with the one it continues (JSON-plain, compared key by key)."""
    params = {k: v for k, v in explainer.params().items() if k != "chunk_size"}
    config = {
        "data_dir": str(root.resolve()),
        "classes": list(classes),
        "model": str(getattr(model, "name", type(model).__name__)),
        "method": explainer.name,
        "method_params": params,
        "target": s.target,
        "evidence": s.evidence,
        "grid": s.grid,
        "view_size": s.view_size,
        "regions": [r.as_dict() for r in regions],
        "preprocess": dataclasses.asdict(pre),
    }
    return json.loads(json.dumps(config, default=str))
