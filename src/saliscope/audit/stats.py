"""Streaming accumulators: per-class statistics whose memory does not grow with the data set.

- :class:`Welford`: running mean and spread of equally shaped arrays, one at a time (Welford 1962,
  "Note on a method for calculating corrected sums of squares and products"); exact enough in float64
  for millions of images, and — fed in the same order — bit-for-bit reproducible.
- :class:`AuditStats`: per class, the mean and spread of the grid mass maps and of the region masses,
  the mean image (the model's view), and counts. It is the audit's checkpointed state:
  :meth:`AuditStats.state` / :meth:`AuditStats.from_state` round-trip it exactly through plain arrays.
- :class:`RegionScan`: a second, read-only pass over the stored per-image results once the per-class
  spots are known: how many images concentrate in each candidate region, a histogram of their masses,
  and the ``top_n`` most concentrated images (a bounded heap per class and region).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MASS_BINS = 10  # histogram bins of per-image mass over [0, 1]


class Welford:
    """Running mean and population spread (ddof 0) of arrays of one ``shape``, in float64."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.count = 0
        self.mean = np.zeros(shape, np.float64)
        self.m2 = np.zeros(shape, np.float64)

    def add(self, value: np.ndarray) -> None:
        """Fold one array in."""
        x = np.asarray(value, np.float64)
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)

    def merge(self, other: Welford) -> None:
        """Fold in another accumulator's values, as if they had been added here one by one (Chan, Golub &
        LeVeque 1979, "Updating formulae and a pairwise algorithm for computing sample variances"): the
        seam for partial results computed elsewhere. Equal to adding them in turn up to float rounding."""
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        self.count = total

    def std(self) -> np.ndarray:
        """Population standard deviation (zeros before the first value)."""
        return np.sqrt(self.m2 / max(self.count, 1))

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.count": np.array(self.count), f"{prefix}.mean": self.mean, f"{prefix}.m2": self.m2}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], prefix: str) -> Welford:
        w = cls(tuple(state[f"{prefix}.mean"].shape))
        w.count = int(state[f"{prefix}.count"])
        w.mean = np.array(state[f"{prefix}.mean"], np.float64)
        w.m2 = np.array(state[f"{prefix}.m2"], np.float64)
        return w


@dataclass
class ClassStats:
    """One class's accumulators. ``maps`` and ``masses`` see only images with a non-flat map."""

    maps: Welford
    masses: Welford
    images: int = 0  # audited images (flat ones included)
    flat: int = 0  # images whose map had no positive evidence
    correct: int = 0  # images whose explained class is this folder's class (predicted-class audits)
    judged: int = 0  # images for which ``correct`` could be decided
    pixel_sum: np.ndarray | None = None  # (3, h, w) float64 sum of the model's views
    pixel_count: int = 0

    def mean_image(self) -> np.ndarray | None:
        """``(3, h, w)`` mean of the model's views in [0, 1], or None before the first image."""
        if self.pixel_sum is None or self.pixel_count == 0:
            return None
        return self.pixel_sum / self.pixel_count


class AuditStats:
    """Per-class accumulators of an audit, for ``classes`` (folder names), ``n_regions`` regions and a grid."""

    def __init__(self, classes: Sequence[str], *, n_regions: int, grid: int) -> None:
        self.classes = list(classes)
        self.n_regions = n_regions
        self.grid = grid
        self.per_class = {c: ClassStats(Welford((grid, grid)), Welford((n_regions,))) for c in self.classes}

    def add(
        self,
        label: str,
        *,
        grid_map: np.ndarray | None,
        masses: np.ndarray | None,
        pixels: np.ndarray | None,
        correct: bool | None,
    ) -> None:
        """Fold in one image of class ``label``: its ``(G, G)`` map and ``(R,)`` masses (None when flat),
        its ``(3, h, w)`` view, and whether its explained class is its folder's class (None: unknown)."""
        s = self.per_class[label]
        s.images += 1
        if grid_map is None or masses is None:
            s.flat += 1
        else:
            s.maps.add(grid_map)
            s.masses.add(masses)
        if correct is not None:
            s.judged += 1
            s.correct += int(correct)
        if pixels is not None:
            view = np.asarray(pixels, np.float64)
            if s.pixel_sum is None:
                s.pixel_sum = np.zeros_like(view)
            s.pixel_sum += view
            s.pixel_count += 1

    def merge(self, other: AuditStats) -> None:
        """Fold in the statistics of another part of the same audit (same regions and grid; its classes
        some or all of these): a distributed engine maps :func:`~.batch.audit_batch` over partitions, folds
        each partition's records into its own ``AuditStats`` (over the classes the partition holds), and
        merges those here. Means and spreads equal a single pass's up to float rounding; counts and sums
        exactly."""
        if (other.n_regions, other.grid) != (self.n_regions, self.grid) or not set(other.classes) <= set(self.classes):
            raise ValueError("only statistics of the same audit (classes, regions, grid) can be merged")
        for name, theirs in other.per_class.items():
            mine = self.per_class[name]
            mine.maps.merge(theirs.maps)
            mine.masses.merge(theirs.masses)
            mine.images += theirs.images
            mine.flat += theirs.flat
            mine.correct += theirs.correct
            mine.judged += theirs.judged
            if theirs.pixel_sum is not None:
                mine.pixel_sum = (
                    theirs.pixel_sum.copy() if mine.pixel_sum is None else mine.pixel_sum + theirs.pixel_sum
                )
            mine.pixel_count += theirs.pixel_count

    @property
    def images(self) -> int:
        return sum(s.images for s in self.per_class.values())

    # -- checkpoints: plain arrays, exact round trip ------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        meta = {"classes": self.classes, "n_regions": self.n_regions, "grid": self.grid}
        out: dict[str, np.ndarray] = {"stats.meta": np.array(json.dumps(meta))}
        for i, c in enumerate(self.classes):
            s = self.per_class[c]
            out.update(s.maps.state(f"c{i}.maps"))
            out.update(s.masses.state(f"c{i}.masses"))
            out[f"c{i}.counts"] = np.array([s.images, s.flat, s.correct, s.judged, s.pixel_count], np.int64)
            if s.pixel_sum is not None:
                out[f"c{i}.pixels"] = s.pixel_sum
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> AuditStats:
        meta = json.loads(str(state["stats.meta"]))
        stats = cls(meta["classes"], n_regions=int(meta["n_regions"]), grid=int(meta["grid"]))
        for i, c in enumerate(stats.classes):
            images, flat, correct, judged, pixel_count = (int(v) for v in state[f"c{i}.counts"])
            pixels = state.get(f"c{i}.pixels")
            stats.per_class[c] = ClassStats(
                Welford.from_state(state, f"c{i}.maps"),
                Welford.from_state(state, f"c{i}.masses"),
                images,
                flat,
                correct,
                judged,
                None if pixels is None else np.array(pixels, np.float64),
                pixel_count,
            )
        return stats


# ----- the second pass --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A region to scan for one class: a column of the stored masses, or a window of the grid map."""

    name: str
    area: float
    column: int | None = None  # index into the stored region masses
    window: tuple[int, int, int, int] | None = None  # (r0, r1, c0, c1) grid cells, for a spot

    def mass(self, masses: np.ndarray, grid_map: np.ndarray) -> float:
        if self.column is not None:
            return float(masses[self.column])
        assert self.window is not None
        r0, r1, c0, c1 = self.window
        return float(grid_map[r0:r1, c0:c1].sum())


RANK_DECIMALS = 9  # masses equal to this many decimals tie (float noise must not pick the images shown)


@dataclass
class Ranked:
    """One image in a top-N heap: ranked by mass (to :data:`RANK_DECIMALS` decimals), then by arrival, the
    earlier image ranking higher. Rounding first makes masses that differ only by float noise (1.0 and
    1.0000000000000002, as two thread counts or engines compute them) tie, so the earlier image wins."""

    mass: float
    order: int
    key: str
    record: dict[str, Any]

    def rank(self) -> tuple[float, int]:
        return round(self.mass, RANK_DECIMALS), -self.order

    def __lt__(self, other: Ranked) -> bool:
        return self.rank() < other.rank()

    def __gt__(self, other: Ranked) -> bool:
        return self.rank() > other.rank()


class TopN:
    """The ``n`` items with the largest mass seen so far (a min-heap of at most ``n`` entries)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._heap: list[Ranked] = []

    def add(self, item: Ranked) -> None:
        if self.n <= 0:
            return
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:
            heapq.heapreplace(self._heap, item)

    def best(self) -> list[Ranked]:
        """Largest mass first; among equal masses, the earliest image first."""
        return sorted(self._heap, key=lambda r: r.rank(), reverse=True)


@dataclass
class RegionTally:
    """For one class and one candidate region: images concentrating there, mass histogram, top images."""

    candidate: Candidate
    top: TopN
    concentrated: int = 0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(MASS_BINS, np.int64))


class RegionScan:
    """Second pass over the per-image results, with candidate regions per class fixed in advance.

    An image *concentrates* in a region when its excess there (:func:`excess`) reaches ``min_excess``.
    """

    def __init__(self, candidates: dict[str, list[Candidate]], *, min_excess: float, top_n: int) -> None:
        self.min_excess = min_excess
        self.tallies = {c: [RegionTally(k, TopN(top_n)) for k in ks] for c, ks in candidates.items()}
        self._order = 0

    def add(self, label: str, key: str, masses: np.ndarray, grid_map: np.ndarray, record: dict[str, Any]) -> None:
        """One non-flat image of class ``label`` (``record``: what the report needs to draw it)."""
        self._order += 1
        for tally in self.tallies.get(label, ()):
            m = tally.candidate.mass(masses, grid_map)
            if excess(m, tally.candidate.area) >= self.min_excess:
                tally.concentrated += 1
            tally.histogram[min(int(max(m, 0.0) * MASS_BINS), MASS_BINS - 1)] += 1
            tally.top.add(Ranked(m, self._order, key, record))


def excess(mass: float, area: float) -> float:
    """How much of the evidence *outside* a region's fair share was drawn into it: ``(mass - area) / (1 - area)``.

    0 for a map spread evenly (mass = area), 1 for a map entirely inside the region, negative for a map
    that avoids it. Unlike the ratio mass / area, it means the same for a 4 % corner as for a 36 % border.
    """
    if area >= 1.0:
        return 0.0
    return (mass - area) / (1.0 - area)


def best_window(mean_map: np.ndarray, side: int) -> tuple[int, int, int, int]:
    """``(r0, r1, c0, c1)``: the ``side × side`` window of grid cells holding the most mean mass.

    By linearity, a window's share of the *mean* map is the mean of the images' shares in it, so this is
    the fixed spot that draws the most evidence across the class. Ties go to the first window (top-left).
    """
    g_rows, g_cols = mean_map.shape
    side = max(1, min(side, g_rows, g_cols))
    table = np.pad(mean_map.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = table[side:, side:] - table[:-side, side:] - table[side:, :-side] + table[:-side, :-side]
    r0, c0 = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(r0), int(r0) + side, int(c0), int(c0) + side
