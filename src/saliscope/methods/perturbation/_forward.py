"""Score a stream of masked inputs, chunked: the one forward-only loop every perturbation method runs.

Row ``r`` of the work is perturbation ``r % n`` of image ``r // n``. Each chunk's perturbed inputs are
built just before its forward pass (never all ``B * n`` at once), as ``x * keep + fill * (1 - keep)``
(``torch.lerp(fill, x, keep)``: exactly ``x`` where ``keep`` is 1 and exactly ``fill`` where it is 0), from
one row of the image when the whole chunk is one image. The chunk size comes from the explainer's
:class:`Chunker` under a forward-only key, probed on the first row by the bytes its torch calls create.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ...core.chunking import image_rows
from ...core.cost import CostMeter
from ...core.inference_copy import net_for_run
from ...core.memory_layout import in_preferred_layout
from ...core.targets import BoundTarget

if TYPE_CHECKING:
    from ..base import Explainer

Keep = Callable[[Tensor, Tensor], Tensor]
_MANY_CHUNKS = 20  # with progress=None, a run of this many chunks shows a bar (on a terminal only)


@dataclass(frozen=True)
class ScoredChunk:
    """One chunk of rows: which image and perturbation each row is, its keep mask, and its scores."""

    sample: Tensor  # (R,) long, on the input's device: the image of each row
    index: Tensor  # (R,) long, on the input's device: the perturbation of each row
    keep: Tensor  # (R, 1, H, W): 1 where the input is kept, 0 where it is replaced
    scores: Tensor  # (K, R): the score of each row for each of the K targets


def scored_chunks(
    explainer: Explainer,
    net: nn.Module,
    x: Tensor,
    fill: Tensor,
    targets: list[BoundTarget],
    meter: CostMeter,
    *,
    n: int,
    keep: Keep,
    progress: bool | None = None,
) -> Iterator[ScoredChunk]:
    """Yield the scored chunks of ``n`` perturbations of every image of ``x`` ``(B, C, H, W)``.

    ``keep(sample, index)`` returns the ``(R, 1, H, W)`` keep masks of the rows ``(sample, index)``;
    ``fill`` ``(B, C, H, W)`` is what hidden pixels become. Runs under ``torch.no_grad()``.
    """
    total = int(x.shape[0]) * n
    key = explainer.chunk_key(x)
    spans = explainer.chunker.spans(total, key=key, device=x.device, params=net.parameters, forward_only=True)
    bar: Any = None  # decided after the first chunk, once the rows per chunk are known
    decided = False
    try:
        with torch.no_grad():
            fast = net_for_run(net, x[:1], n, meter)
            for start, stop in spans:
                rows = torch.arange(start, stop)
                sample_cpu = rows // n
                sample, index = sample_cpu.to(x.device), (rows % n).to(x.device)
                mask = keep(sample, index).to(x.dtype)
                # fill + mask·(x − fill), computed as exactly x where the mask is 1 and exactly fill where it is 0
                inputs = torch.lerp(image_rows(fill, sample_cpu), image_rows(x, sample_cpu), mask)
                output = in_preferred_layout(net, inputs, fast)
                meter.forward(stop - start)
                scores = torch.stack([t.take(sample_cpu)(output) for t in targets])
                yield ScoredChunk(sample, index, mask, scores)
                if not decided:
                    decided = True
                    bar = _progress_bar(explainer, key, x.device, total, stop, progress)
                elif bar is not None:
                    bar.update(stop - start)
    finally:
        if bar is not None:
            bar.close()


def _progress_bar(
    explainer: Explainer, key: tuple[object, ...], device: torch.device, total: int, done: int, progress: bool | None
) -> Any:
    """A tqdm bar when asked for, or (``progress=None``) for a long run on a terminal; else None."""
    if progress is False or done >= total:
        return None
    if progress is None:
        rows = explainer.chunker.rows_per_chunk(key, device) or total
        if not sys.stderr.isatty() or (total - done) / rows < _MANY_CHUNKS:
            return None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=explainer.name, unit="pass", leave=False)
    bar.update(done)
    return bar
