"""One batch of an audit, from loaded images to stored records: what every engine runs per batch.

:func:`audit_loaded` explains a :class:`~.dataset.LoadedBatch` with :func:`~.batch.audit_batch` (falling back
to one image at a time when the batch fails, so that one image the method cannot explain is listed instead
of ending the audit) and turns the result into the batch's records and the accumulator updates they imply
(:func:`records_of`). The local engine folds the updates into the audit's statistics as it goes; the Ray
engine folds each batch's updates into a partial :class:`~.stats.AuditStats` on a worker and merges those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from ..core.errors import SaliscopeError
from ..core.model_state import model_device
from ..methods.base import Explainer
from ..models.preprocess import Preprocess
from .batch import BatchResult, audit_batch
from .dataset import Item, LoadedBatch
from .regions import Region
from .settings import AuditSettings
from .stats import AuditStats
from .store import decode_map, encode_map

Update = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class BatchContext:
    """What explaining a batch needs, the same for every batch of an audit."""

    explainer: Explainer
    regions: tuple[Region, ...]
    settings: AuditSettings
    preprocess: Preprocess
    label_of: dict[str, int] | None


@dataclass(frozen=True)
class BatchStep:
    """One batch's outcome: its records (in the batch's order, failures included), the accumulator updates,
    how many images were audited, the seconds the method's explain calls took, and whether the explainer
    is warmed up now."""

    records: list[dict[str, Any]]
    updates: list[Update]
    audited: int
    method_seconds: float
    warmed: bool


def audit_loaded(ctx: BatchContext, batch: Sequence[Item], loaded: LoadedBatch, *, warmed: bool) -> BatchStep:
    """Explain the images of ``batch`` that could be read (``loaded``) and turn them into records.

    ``warmed`` says whether the explainer has explained an image of this audit before (see :func:`warm`);
    the first batch warms it up.
    """
    result = None
    if loaded.images is not None:
        if not warmed:
            warmed = warm(ctx, loaded)
        loaded, result = explain_batch(ctx, loaded, setup_works=warmed)
    # Accuracy only means something when the model chose the class explained.
    truth = ctx.label_of if ctx.settings.target == "predicted" else None
    records, updates = records_of(batch, loaded, result, truth)
    seconds = 0.0 if result is None else result.cost.seconds
    return BatchStep(records, updates, len(loaded.items), seconds, warmed)


def fold(stats: AuditStats, updates: Sequence[Update]) -> None:
    """Add a batch's updates to ``stats``, image by image."""
    for label, kwargs in updates:
        stats.add(label, **kwargs)


def warm(ctx: BatchContext, loaded: LoadedBatch) -> bool:
    """Explain one image once and throw the answer away; False when that image cannot be explained.

    The explainer measures what one row costs on its first call and plans its chunks from then on; doing
    that here, before the first batch, chunks every batch alike in a fresh and in a resumed audit, so a
    resumed audit computes bit-for-bit the maps an uninterrupted one would have.
    """
    assert loaded.images is not None
    try:
        explain(ctx, loaded.images[:1], loaded.items[:1])
    except SaliscopeError:
        return False  # the batch will tell whether the image or the set-up is at fault
    return True


def explain_batch(
    ctx: BatchContext, loaded: LoadedBatch, *, setup_works: bool
) -> tuple[LoadedBatch, BatchResult | None]:
    """The batch's result; when it fails, each image is tried alone so that one image the method cannot
    explain (a model that overflows on it, say) is listed as a failure instead of ending the audit.

    When every image fails with the same error before any image of the audit was explained
    (``setup_works`` False), the fault is the set-up's (a layer, a target), not the images': it is raised.
    """
    assert loaded.images is not None
    try:
        return loaded, explain(ctx, loaded.images, loaded.items)
    except SaliscopeError as exc:
        first = exc
    good: list[int] = []
    bad: list[tuple[Item, str]] = []
    for j, item in enumerate(loaded.items):
        try:
            explain(ctx, loaded.images[j : j + 1], [item])
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
    return kept, (explain(ctx, kept.images, kept.items) if kept.images is not None else None)


def explain(ctx: BatchContext, images: Tensor, items: Sequence[Item]) -> BatchResult:
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
) -> tuple[list[dict[str, Any]], list[Update]]:
    """One batch's records (in the batch's order, failures included) and the accumulator updates they imply.

    ``truth`` maps a folder's class to the model's class index, to count how often the class explained
    is the folder's (None: not counted).

    The stats see each map exactly as it is stored (float16), so statistics recomputed from the records
    agree with the accumulated ones.
    """
    failed = {item.key: reason for item, reason in loaded.failed}
    position = {item.key: j for j, item in enumerate(loaded.items)}
    records: list[dict[str, Any]] = []
    updates: list[Update] = []
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
