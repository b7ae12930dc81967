"""The local audit: stream a data folder through :func:`~.batch.audit_batch`, batch by batch, to a verdict.

Reading runs one batch ahead in a background thread (image decoding overlaps the model), results go to
disk after every batch (:mod:`.store`), the accumulators keep a fixed size per class (:mod:`.stats`), and at
the end one streaming pass over the stored results gives the verdicts
(:mod:`.findings`) and the report (:mod:`.report`). What grows with the data set is the list of file
names and the records on disk, never the memory held per image.

A distributed engine would replace only the loop: map :func:`~.batch.audit_batch` over partitions, turn
each result into records with :func:`records_of`, fold each partition's records into its own
:class:`~.stats.AuditStats`, and combine those with :meth:`~.stats.AuditStats.merge`.
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
from typing import Any, Protocol

import numpy as np
from torch import Tensor, nn

from .. import registry
from ..core.errors import InputError, SaliscopeError, TargetError
from ..core.model_state import model_device
from ..core.targets import label_index
from ..methods.base import Explainer
from ..models.preprocess import Preprocess
from .batch import BatchResult, audit_batch, mass_view
from .dataset import Item, LoadedBatch, crop_warnings, interleave, load_batch, scan_image_folder, seen_warnings
from .findings import analyse
from .regions import Region, standard_regions
from .report import build_summary, write_outputs
from .settings import AuditSettings
from .stats import AuditStats
from .store import AuditStore, decode_map, encode_map
from .verdicts import ClassVerdict, method_notes


class Progress(Protocol):
    def start(self, total: int, done: int) -> None: ...
    def advance(self, n: int) -> None: ...


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
) -> AuditOutcome:
    """Audit every image of the ImageFolder ``data_dir`` with ``model``; write the results to ``out``.

    ``explainer`` defaults to ``settings.method`` built for ``model``; ``preprocess`` to the model's own
    ``.preprocess``. Writes ``records.jsonl`` and ``state.npz`` as it goes, then ``summary.json`` and
    ``report.html``. With ``resume``, continues an interrupted audit in ``out``.
    """
    s = settings or AuditSettings()
    _check_settings(s)
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
    store = AuditStore(Path(out))
    stats, done = store.start(config, resume=resume)
    resumed = stats is not None
    if stats is None:
        stats = AuditStats(folder.classes, n_regions=len(regions), grid=s.grid)
    order = interleave(folder.items, folder.classes)
    if s.limit is not None:
        order = order[: s.limit]
    todo = [item for item in order if item.key not in done]
    if progress is not None:
        progress.start(len(todo), len(order) - len(todo))

    context = _Context(explainer, regions, s, pre, label_of)
    streamed = time.perf_counter()
    audited, method_seconds = _stream(todo, context, stats, store, config, progress)
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
    run = {
        "seconds": 0.0,
        "stream_seconds": streamed,
        "method_seconds": method_seconds,
        "audited_now": audited,
        "resumed": resumed,
        "batch_size": s.batch_size,
    }
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


# ----- the loop ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    explainer: Explainer
    regions: tuple[Region, ...]
    settings: AuditSettings
    preprocess: Preprocess
    label_of: dict[str, int] | None


def _stream(
    todo: list[Item],
    ctx: _Context,
    stats: AuditStats,
    store: AuditStore,
    config: dict[str, Any],
    progress: Progress | None,
) -> tuple[int, float]:
    """Audit ``todo`` batch by batch; returns how many images were audited and the seconds the method's
    explain calls took. Checkpoints on the way out, also when interrupted, unless the interruption fell
    between writing a batch and counting it."""
    size = ctx.settings.batch_size
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    audited = 0
    method_seconds = 0.0
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
                result = None
                if loaded.images is not None:
                    if not warmed:
                        warmed = _warm(ctx, loaded)
                    loaded, result = _explain_batch(ctx, loaded, setup_works=warmed)
                    method_seconds += 0.0 if result is None else result.cost.seconds
                # Accuracy only means something when the model chose the class explained.
                truth = ctx.label_of if ctx.settings.target == "predicted" else None
                records, updates = records_of(batch, loaded, result, truth)
                consistent = False
                store.append(records)
                for label, kwargs in updates:
                    stats.add(label, **kwargs)
                consistent = True
                audited += len(loaded.items)
                if store.due():
                    store.checkpoint(stats, config)
                if progress is not None:
                    progress.advance(len(batch))
    finally:
        if consistent:
            with contextlib.suppress(Exception):
                store.checkpoint(stats, config)
    return audited, method_seconds


def _warm(ctx: _Context, loaded: LoadedBatch) -> bool:
    """Explain one image once and throw the answer away; False when that image cannot be explained.

    The explainer measures what one row costs on its first call and plans its chunks from then on; doing
    that here, before the first batch, chunks every batch alike in a fresh and in a resumed audit, so a
    resumed audit computes bit-for-bit the maps an uninterrupted one would have.
    """
    assert loaded.images is not None
    try:
        _explain(ctx, loaded.images[:1], loaded.items[:1])
    except SaliscopeError:
        return False  # the batch will tell whether the image or the set-up is at fault
    return True


def _explain_batch(ctx: _Context, loaded: LoadedBatch, *, setup_works: bool) -> tuple[LoadedBatch, BatchResult | None]:
    """The batch's result; when it fails, each image is tried alone so that one image the method cannot
    explain (a model that overflows on it, say) is listed as a failure instead of ending the audit.

    When every image fails with the same error before any image of the audit was explained
    (``setup_works`` False), the fault is the set-up's (a layer, a target), not the images': it is raised.
    """
    assert loaded.images is not None
    try:
        return loaded, _explain(ctx, loaded.images, loaded.items)
    except SaliscopeError as exc:
        first = exc
    good: list[int] = []
    bad: list[tuple[Item, str]] = []
    for j, item in enumerate(loaded.items):
        try:
            _explain(ctx, loaded.images[j : j + 1], [item])
            good.append(j)
        except SaliscopeError as exc:
            bad.append((item, f"cannot be explained: {' '.join(str(exc).split())}"))
    if not setup_works and not good and len(bad) > 1 and len({reason for _, reason in bad}) == 1:
        raise first
    kept = LoadedBatch(
        loaded.images[good] if good else None,
        tuple(loaded.items[j] for j in good),
        tuple(loaded.sizes[j] for j in good),
        tuple(loaded.seen[j] for j in good),
        loaded.failed + tuple(bad),
    )
    return kept, (_explain(ctx, kept.images, kept.items) if kept.images is not None else None)


def _explain(ctx: _Context, images: Tensor, items: Sequence[Item]) -> BatchResult:
    s = ctx.settings
    targets = None if s.target == "predicted" else [ctx.label_of[i.label] for i in items]  # type: ignore[index]
    return audit_batch(
        ctx.explainer,
        images.to(model_device(ctx.explainer.model)),
        regions=ctx.regions,
        targets=targets,
        grid=s.grid,
        preprocess=ctx.preprocess,
        view_size=s.view_size,
        evidence=s.evidence,
    )


def records_of(
    batch: Sequence[Item],
    loaded: LoadedBatch,
    result: BatchResult | None,
    truth: dict[str, int] | None,
) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """One batch's records (in the batch's order, failures included) and the accumulator updates they imply.

    ``truth`` maps a folder's class to the model's class index, to count how often the class explained
    is the folder's (None: not counted).

    The stats see each map exactly as it is stored (float16), so statistics recomputed from the records
    agree with the accumulated ones.
    """
    failed = {item.key: reason for item, reason in loaded.failed}
    position = {item.key: j for j, item in enumerate(loaded.items)}
    records: list[dict[str, Any]] = []
    updates: list[tuple[str, dict[str, Any]]] = []
    for item in batch:
        if item.key in failed:
            records.append({"key": item.key, "class": item.label, "error": failed[item.key]})
            continue
        assert result is not None
        j = position[item.key]
        flat = bool(result.flat[j])
        explained = int(result.classes[j])
        score = float(result.scores[j])
        encoded = None if flat else encode_map(result.maps[j].numpy())
        masses = None if flat else [float(v) for v in result.masses[j]]
        records.append(
            {
                "key": item.key,
                "class": item.label,
                "explained": explained,
                "score": score if np.isfinite(score) else None,
                "flat": flat,
                "masses": masses,
                "map": encoded,
                "size": list(loaded.sizes[j]),
                "seen": loaded.seen[j],
            }
        )
        correct = None if truth is None else explained == truth[item.label]
        updates.append(
            (
                item.label,
                {
                    "grid_map": None if encoded is None else decode_map(encoded, result.maps.shape[-1]),
                    "masses": None if masses is None else np.asarray(masses, np.float64),
                    "pixels": None if result.pixels is None else result.pixels[j].numpy(),
                    "correct": correct,
                },
            )
        )
    return records, updates


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
