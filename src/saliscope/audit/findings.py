"""From accumulated statistics and the stored per-image results to one verdict per class.

For every class: its fixed spot (the grid window holding the most of its mean map), the candidate
regions (border, corners, the user's region, that spot), one streaming pass over the stored results to
see how many images concentrate in each candidate and which do most, then :func:`~.verdicts.judge`.
Memory stays flat: the pass keeps counters, histograms and a ``top_n`` heap per class and region.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .regions import Region
from .stats import AuditStats, Candidate, Ranked, RegionScan, Welford, best_window, excess
from .store import decode_map
from .verdicts import ClassVerdict, RegionFinding, Thresholds, judge


@dataclass(frozen=True)
class ClassAnalysis:
    """A class's verdict, its spot, and its most concentrated images in the verdict's lead region."""

    verdict: ClassVerdict
    spot: Region | None
    suspicious: tuple[Ranked, ...]


def spot_region(mean_map: np.ndarray, *, sides: Sequence[float], input_size: tuple[int, int]) -> Region:
    """The class's fixed spot: for each side in ``sides`` (fractions of the input's side) the window
    holding the most of the class's mean map; of those, the smallest whose excess over its area (see
    :func:`~.stats.excess`) is within 5 % of the largest excess.

    Several sizes, because a spot is as wide as the method sees it: a pixel-exact gradient keeps a small
    marker small, while Grad-CAM on a 7×7 layer spreads it over a third of the side. The excess, not the
    mass, judges the sizes, so a larger window wins only by drawing more than its extra area's share.
    The box is the window's cells' exact pixel extent (cells end on whole pixels, see ``grid_sums``).
    """
    grid = mean_map.shape[0]
    width, height = input_size
    found: list[tuple[float, float, Region]] = []
    for side in sides:
        r0, r1, c0, c1 = best_window(mean_map, max(1, round(side * grid)))
        box = (
            c0 * width // grid / width,
            r0 * height // grid / height,
            c1 * width // grid / width,
            r1 * height // grid / height,
        )
        region = Region("spot", box, "spot")
        area = region.area(height, width)
        found.append((excess(float(mean_map[r0:r1, c0:c1].sum()), area), area, region))
    if not found:
        raise ValueError("at least one spot size is needed")
    # A marker on an even floor has the same excess in every window that holds it; the smallest window
    # within 5% of the best excess locates it most tightly.
    best = max(e for e, _, _ in found)
    return min((f for f in found if f[0] >= best - 0.05 * abs(best)), key=lambda f: f[1])[2]


def analyse(
    stats: AuditStats,
    regions: Sequence[Region],
    records: Iterable[dict[str, Any]],
    *,
    thresholds: Thresholds,
    spot: Sequence[float],
    top_n: int,
    input_size: tuple[int, int],
) -> list[ClassAnalysis]:
    """Verdicts for every class of ``stats``; ``records`` are the stored per-image results, read once."""
    width, height = input_size
    grid = stats.grid
    candidates: dict[str, list[Candidate]] = {}
    spots: dict[str, Region] = {}
    for name, s in stats.per_class.items():
        if s.maps.count == 0:
            continue
        spots[name] = spot_region(s.maps.mean, sides=spot, input_size=input_size)
        r0, r1, c0, c1 = _cells(spots[name], grid, input_size)
        candidates[name] = [Candidate(r.name, r.area(height, width), column=i) for i, r in enumerate(regions)]
        candidates[name].append(Candidate("spot", spots[name].area(height, width), window=(r0, r1, c0, c1)))

    scan = RegionScan(candidates, min_excess=thresholds.min_excess, top_n=top_n)
    values = {c: [Welford(()) for _ in ks] for c, ks in candidates.items()}
    for record in records:
        label = record.get("class")
        if label not in candidates or record.get("error") is not None or record.get("flat"):
            continue
        masses = np.asarray(record["masses"], np.float64)
        grid_map = decode_map(record["map"], grid)
        light = {k: record.get(k) for k in ("key", "explained", "score", "map")}
        scan.add(label, record["key"], masses, grid_map, light)
        for w, k in zip(values[label], candidates[label], strict=True):
            w.add(np.float64(k.mass(masses, grid_map)))

    out = []
    for name, s in stats.per_class.items():
        measured = s.maps.count
        findings: list[RegionFinding] = []
        if name in candidates:
            described = [*regions, spots[name]]
            for region, tally, w in zip(described, scan.tallies[name], values[name], strict=True):
                findings.append(
                    RegionFinding(
                        name=region.name,
                        kind=region.kind,
                        box=region.box,
                        outside=region.outside,
                        area=tally.candidate.area,
                        mass=float(w.mean),
                        spread=float(w.std()),
                        share=tally.concentrated / max(measured, 1),
                        others=_others(stats, name, tally.candidate),
                        histogram=tuple(int(v) for v in tally.histogram),
                    )
                )
        verdict = judge(
            name,
            images=s.images,
            measured=measured,
            findings=tuple(findings),
            thresholds=thresholds,
            input_size=input_size,
        )
        suspicious: tuple[Ranked, ...] = ()
        if verdict.lead is not None:
            lead = [f.name for f in findings].index(verdict.lead.name)
            suspicious = tuple(scan.tallies[name][lead].top.best())
        out.append(ClassAnalysis(verdict, spots.get(name), suspicious))
    return out


def _cells(spot: Region, grid: int, input_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The spot's window back in grid cells (it was built from them, so the round trip is exact)."""
    width, height = input_size
    r0, r1, c0, c1 = spot.pixels(height, width)
    rows = [i * height // grid for i in range(grid + 1)]
    cols = [j * width // grid for j in range(grid + 1)]
    return rows.index(r0), rows.index(r1), cols.index(c0), cols.index(c1)


def _others(stats: AuditStats, name: str, candidate: Candidate) -> float | None:
    """The other classes' images' mean mass in ``candidate`` (pooled over images), None without any."""
    total, count = 0.0, 0
    for other, s in stats.per_class.items():
        if other == name or s.maps.count == 0:
            continue
        if candidate.column is not None:
            mean = float(s.masses.mean[candidate.column])
        else:
            assert candidate.window is not None
            r0, r1, c0, c1 = candidate.window
            mean = float(s.maps.mean[r0:r1, c0:c1].sum())
        total += mean * s.maps.count
        count += s.maps.count
    return None if count == 0 else total / count
