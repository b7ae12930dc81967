"""Noisy linear imputation (Rong et al. 2022, ROAD): removed pixels become the weighted mean of their neighbours.

Each removed pixel ``i`` satisfies ``v_i = sum_j w_ij v_j / sum_j w_ij`` over its 8 neighbours ``j`` inside
the image (direct neighbours weigh 1/6, diagonal ones 1/12: the paper's constants), where removed neighbours
are unknowns too and kept ones are known; at the border the weights of the missing neighbours drop out. The
removed pixels of an image form one sparse linear system, symmetric and diagonally dominant (positive
definite whenever a pixel is kept), with one right-hand side per channel.

:func:`impute` fills many images at once — every (image, percentage) step of a ROAD curve: each image's
equations are assembled with array operations (no loop over pixels) and factorised on their own, the images
spread over the threads torch may use (SuperLU releases the GIL while it factorises; two cores take 0.19 s where one
took 0.29 s for four 224 × 224 images). The unknowns are ordered by a nested dissection of the
pixel grid (George 1973, "Nested Dissection of a Regular Finite Element Mesh", SIAM J. Numer. Anal. 10):
the grid is split in halves by a line of pixels, recursively, and the separators come last, so the sparse
factorisation fills in ``O(n log n)`` entries instead of the ``O(n^1.5)`` of a band (a pixel's removed
subset inherits the grid's dissection: a separator of the grid still separates its pixels). Because the
system is positive definite, no pivoting is needed and the factorisation keeps that order.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from ..core.errors import InputError

# (row offset, column offset, weight): a pixel is the weighted mean of its 8 neighbours (Rong et al. 2022).
NEIGHBOURS: tuple[tuple[int, int, float], ...] = (
    (-1, 0, 1 / 6),
    (1, 0, 1 / 6),
    (0, -1, 1 / 6),
    (0, 1, 1 / 6),
    (-1, -1, 1 / 12),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (1, 1, 1 / 12),
)


@lru_cache(maxsize=8)
def dissection_rank(height: int, width: int) -> np.ndarray:
    """``(height * width,)`` each pixel's position in a nested-dissection elimination order of the grid."""
    order: list[np.ndarray] = []
    rows, cols = np.divmod(np.arange(height * width), width)

    def split(index: np.ndarray, r: np.ndarray, c: np.ndarray) -> None:
        if index.size <= 32:
            order.append(index)
            return
        key = r if r.max() - r.min() >= c.max() - c.min() else c
        middle = (int(key.min()) + int(key.max())) // 2
        below, above = key < middle, key > middle
        split(index[below], r[below], c[below])
        split(index[above], r[above], c[above])
        order.append(index[key == middle])  # the separator, eliminated after both halves

    split(np.arange(height * width), rows, cols)
    rank = np.empty(height * width, dtype=np.int64)
    rank[np.concatenate(order)] = np.arange(height * width)
    return rank


def impute(
    images: Tensor,
    removed: Tensor,
    *,
    noise: float = 0.0,
    generators: Sequence[torch.Generator | None] | None = None,
) -> Tensor:
    """``(R, C, H, W)``: each image with its ``removed`` ``(R, H, W)`` pixels filled by linear imputation,
    plus ``noise * N(0, 1)`` on them (image ``r``'s pattern drawn from ``generators[r]``, one ``(C, H, W)``
    float64 draw on the CPU, so every device sees the same noise). Computed in float64 on the CPU, returned
    in the images' dtype and device; kept pixels are unchanged. Every image must keep at least one pixel.
    """
    n, c, h, w = images.shape
    flat_removed = removed.reshape(n, h * w).cpu().numpy()
    full = flat_removed.all(axis=1)
    if full.any():
        raise InputError(
            f"every pixel of image(s) {np.flatnonzero(full).tolist()} was removed: nothing is left to impute from",
            "remove less than 100%",
        )
    values = images.detach().reshape(n, c, h * w).cpu().double().numpy()
    filled = values.copy()
    counts = flat_removed.sum(axis=1)
    rows = [r for r in range(n) if counts[r]]
    # As many at once as torch may use threads (the user's limit, and each factor's memory, held at once).
    with ThreadPoolExecutor(max_workers=max(1, min(len(rows), torch.get_num_threads()))) as pool:
        solved = pool.map(lambda r: _solve(flat_removed[r], values[r], h, w), rows)
        for r, (pixel, solution) in zip(rows, solved, strict=True):
            filled[r][:, pixel] = solution.T
    out = torch.from_numpy(filled).view(n, c, h, w)
    if noise:
        for r in range(n):
            if counts[r]:
                generator = _seeded(None if generators is None else generators[r])
                z = torch.randn((c, h, w), generator=generator, dtype=torch.float64)
                out[r] = torch.where(removed[r].cpu().view(1, h, w), out[r] + noise * z, out[r])
    return out.to(device=images.device, dtype=images.dtype)


def _solve(removed: np.ndarray, values: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One image's removed pixels (``removed`` ``(H * W,)`` bool, ``values`` ``(C, H * W)``) and their
    imputed values ``(unknowns, C)``: the system assembled with array operations, unknowns in the grid's
    nested-dissection order, factorised without pivoting (it is positive definite)."""
    from scipy.sparse import coo_matrix, csc_matrix  # scipy.sparse.linalg costs ~0.8 s to import: only when used
    from scipy.sparse.linalg import splu

    pixel = np.flatnonzero(removed)
    pixel = pixel[np.argsort(dissection_rank(h, w)[pixel], kind="stable")]
    unknowns = pixel.size
    variable = np.full(h * w, -1, dtype=np.int64)
    variable[pixel] = np.arange(unknowns)
    r, q = np.divmod(pixel, w)
    diagonal = np.zeros(unknowns)
    rhs = np.zeros((unknowns, values.shape[0]))
    rows, cols, entries = [], [], []
    for dr, dc, weight in NEIGHBOURS:
        nr, nc = r + dr, q + dc
        inside = (nr >= 0) & (nr < h) & (nc >= 0) & (nc < w)
        diagonal[inside] += weight
        eq = np.flatnonzero(inside)
        neighbour = (nr * w + nc)[eq]
        is_unknown = removed[neighbour]
        rows.append(eq[is_unknown])
        cols.append(variable[neighbour[is_unknown]])
        entries.append(np.full(int(is_unknown.sum()), -weight))
        # Each equation has at most one neighbour per offset, so these indices never repeat.
        known = ~is_unknown
        rhs[eq[known]] += weight * values[:, neighbour[known]].T
    rows.append(np.arange(unknowns))
    cols.append(np.arange(unknowns))
    entries.append(diagonal)
    system = coo_matrix(
        (np.concatenate(entries), (np.concatenate(rows), np.concatenate(cols))), shape=(unknowns, unknowns)
    )
    factor = splu(csc_matrix(system), permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return pixel, factor.solve(rhs)


def _seeded(generator: torch.Generator | None) -> torch.Generator:
    """``generator``, or a generator seeded with 0 when none is given: the noise never comes from torch's
    global random state."""
    return generator if generator is not None else torch.Generator().manual_seed(0)


def noisy_linear_imputation(
    image: Tensor, removed: Tensor, *, noise: float = 0.01, generator: torch.Generator | None = None
) -> Tensor:
    """``(C, H, W)``: ``image`` with the ``removed`` ``(H, W)`` bool pixels filled by noisy linear imputation
    (:func:`impute` of one image): the weighted-mean system, then ``noise * N(0, 1)`` drawn from ``generator``
    (seed 0 when None) added to the removed pixels. Every removed region must touch a kept pixel, which holds
    whenever at least one pixel is kept."""
    return impute(image.unsqueeze(0), removed.unsqueeze(0), noise=noise, generators=[generator])[0]
