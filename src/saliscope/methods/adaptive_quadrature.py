"""Adaptive quadrature of a path integral whose exact value is known piece by piece.

Integrated Gradients integrates the gradient ``g(a)`` along a straight path ``x' + a (x - x')``. For every
piece ``[a, b]`` of the path the integral of the gradient's projection on the path is known exactly without
any gradient: ``f(b) - f(a)``, the change of the score (the fundamental theorem of calculus for line
integrals). A rule's estimate of that projection, minus ``f(b) - f(a)``, is therefore the rule's exact
*completeness residual* on the piece, and the residuals of all pieces add up to the completeness gap of the
whole map. This module decides where the gradient nodes go:

- the path is a triadic partition of ``[0, 1]``; each piece carries one node at its midpoint (the
  midpoint rule), and refining a piece splits it into thirds, whose middle third keeps the old node — so
  the rule is nested and every gradient taken contributes to the final map;
- a forward-only scan of the score at the triadic points of depth ``scan_depth`` (cheap, batched) splits
  pieces before any gradient is taken, by the residual the midpoint rule would leave if the slope at the
  midpoint were the middle third's mean slope;
- after each round of gradients, every piece has two error indicators: its exact completeness residual,
  and an estimate of its error in the map itself, pixel by pixel — the node's contribution minus the line
  through its neighbours' (a second difference), times the piece's width. The second is needed because the
  completeness residual only sees the gradient's projection on the path: on real networks the score can
  rise within the first few percent of the path while the per-pixel gradients, which cancel in that
  projection, keep changing all along it. The pieces with the largest share of either budget are split,
  until ``|gap| <= tolerance * |f(x) - f(x')|`` and the map's estimated error (the pieces' errors added in
  quadrature) ``<= tolerance * ||map||``, or the budget of gradient evaluations is spent.

This is locally adaptive quadrature — Kuncir 1962 (adaptive Simpson), Lyness 1969, the error-driven
subdivision of QUADPACK (Piessens et al. 1983) and Gander & Gautschi 2000, "Adaptive quadrature —
revisited" (BIT 40) — with one error estimate replaced by an exact residual, and the midpoint rule's
nesting under tripling (Davis & Rabinowitz, "Methods of Numerical Integration", 1984). Placing IG's steps
where the path needs them follows the non-uniform IG literature: Bhat & Raychowdhury 2023, "Non-Uniform
Interpolation in Integrated Gradients for Low-Latency Explainable-AI" (ISCAS), which spends steps where a
forward pass sees the logit move, and Kapishnikov et al. 2021, "Guided Integrated Gradients" (CVPR), which
adapts the path itself; Miglani et al. 2020, "Investigating Saturation Effects in Integrated Gradients",
show how unevenly the gradient's contribution is spread along a straight path.

The plan itself is plain Python on one image's numbers (positions, scores, slopes, error estimates); the
gradients and forward passes are run, batched, by :class:`~saliscope.methods.integrated_gradients.IntegratedGradients`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

MAX_DEPTH = 19
#: Positions on the path are integers in ``[0, UNIT]``: every triadic breakpoint (even) and every piece's
#: midpoint (odd) down to ``MAX_DEPTH`` levels is exact, so pieces and scores are keyed without rounding.
UNIT = 2 * 3**MAX_DEPTH
#: Splitting aims below the tolerance by this factor, so one more round rarely falls just short of it.
AIM = 0.5


def alpha(position: int) -> float:
    """The path coordinate in [0, 1] of an integer position."""
    return position / UNIT


def triadic_positions(depth: int) -> list[int]:
    """The ``3**depth + 1`` breakpoints of the triadic partition of depth ``depth``, 0 … ``UNIT``."""
    step = UNIT // 3**depth
    return list(range(0, UNIT + 1, step))


@dataclass
class Piece:
    """A piece ``[lo, hi]`` of the path (integer positions) with one gradient node at its midpoint."""

    lo: int
    hi: int
    depth: int
    slope: float | None = None  # the gradient's projection on the path at the midpoint, once measured

    @property
    def mid(self) -> int:
        return (self.lo + self.hi) // 2

    @property
    def width(self) -> float:
        return (self.hi - self.lo) / UNIT

    def thirds(self) -> tuple[int, int]:
        third = (self.hi - self.lo) // 3
        return self.lo + third, self.lo + 2 * third


class PathPlan:
    """One image's adaptive midpoint rule on ``[0, 1]``.

    ``scores`` maps positions to the score ``f`` there; it must hold 0 and ``UNIT``. Pieces are kept in path
    order. ``evaluations`` counts the gradient nodes (one per piece: nodes are never discarded).
    """

    def __init__(self, scores: dict[int, float], *, tolerance: float, max_evals: int, scan_depth: int) -> None:
        self.scores = scores
        self.tolerance = tolerance
        self.max_evals = max_evals
        self.scan_depth = scan_depth
        self.pieces = [Piece(0, UNIT, 0)]
        self.change = scores[UNIT] - scores[0]
        scale = max(abs(scores[UNIT]), abs(scores[0]), 1.0)
        # Below float noise a residual cannot be reduced: the floor keeps f(x) == f(x') from spending the budget.
        self.target = max(tolerance * abs(self.change), 1e-6 * scale)
        self.map_error = math.inf  # the map's estimated error, once measured
        self.map_target = 0.0

    # -- what the pieces tell ------------------------------------------------------------------------
    @property
    def evaluations(self) -> int:
        return len(self.pieces)

    def exact(self, piece: Piece) -> float:
        """The exact integral of the projected gradient over the piece: the change of the score."""
        return self.scores[piece.hi] - self.scores[piece.lo]

    def residual(self, piece: Piece) -> float:
        """The midpoint rule's completeness residual on a measured piece."""
        assert piece.slope is not None
        return piece.width * piece.slope - self.exact(piece)

    def predicted(self, piece: Piece) -> float:
        """The residual the piece would leave if the slope at its midpoint were its middle third's mean
        slope (read off the scan); 0 where the scan does not reach inside the piece."""
        if piece.depth >= self.scan_depth:
            return 0.0
        first, second = piece.thirds()
        return 3.0 * (self.scores[second] - self.scores[first]) - self.exact(piece)

    def gap(self) -> float:
        """The completeness gap of the rule as it stands: the sum of the measured pieces' residuals."""
        return sum(self.residual(p) for p in self.pieces if p.slope is not None)

    @property
    def measured(self) -> bool:
        return all(p.slope is not None for p in self.pieces)

    @property
    def converged(self) -> bool:
        """Both the completeness gap and the map's estimated error are within the tolerance."""
        return self.measured and abs(self.gap()) <= self.target and self.map_error <= self.map_target

    # -- what to compute next --------------------------------------------------------------------------
    def unmeasured(self) -> list[Piece]:
        """Pieces whose midpoint still needs a gradient, in path order."""
        return [p for p in self.pieces if p.slope is None]

    def unscored(self) -> list[int]:
        """Breakpoints whose score is still unknown (beyond the scan), in path order."""
        wanted = []
        for p in self.pieces:
            for position in (p.lo, p.hi):
                if position not in self.scores and position not in wanted:
                    wanted.append(position)
        return wanted

    # -- refining --------------------------------------------------------------------------------------
    def presplit(self, budget: int) -> None:
        """Split pieces by their :meth:`predicted` residuals, largest first, before any gradient is taken,
        until those predictions are below the aim or ``budget`` nodes are planned."""
        while self.evaluations + 2 <= min(budget, self.max_evals):
            predictions = [abs(self.predicted(p)) for p in self.pieces]
            if sum(predictions) <= AIM * self.target:
                return
            worst = max(range(len(self.pieces)), key=lambda i: (predictions[i], -i))
            if predictions[worst] == 0.0:
                return
            self._split(worst)

    def refine(self, map_errors: Sequence[float], map_norm: float) -> bool:
        """Split the measured pieces with the largest share of the gap's budget or of the map's (``map_errors``:
        each piece's estimated error in the map, :func:`map_errors`; ``map_norm`` the map's norm) — as many as
        it takes for the rest to fall below the aim, at most doubling the nodes per round, as the budget
        allows. Returns whether anything was split."""
        if not self.measured:
            return False
        self.map_error = math.sqrt(sum(e * e for e in map_errors))
        self.map_target = self.tolerance * map_norm
        if self.converged:
            return False
        residuals = [abs(self.residual(p)) for p in self.pieces]
        gap_budget, map_budget = self.target, max(self.map_target, 1e-30)
        shares = [max(r / gap_budget, (e / map_budget) ** 2) for r, e in zip(residuals, map_errors, strict=True)]
        order = sorted(range(len(self.pieces)), key=lambda i: (-shares[i], i))
        left_gap, left_map = sum(residuals), self.map_error**2
        spare = min((self.max_evals - self.evaluations) // 2, max(1, len(self.pieces) // 2))
        chosen: list[int] = []
        for i in order:
            done = left_gap <= AIM * gap_budget and left_map <= (AIM * map_budget) ** 2
            if done or len(chosen) >= spare or shares[i] == 0.0:
                break
            if self.pieces[i].depth >= MAX_DEPTH:
                continue
            chosen.append(i)
            left_gap -= residuals[i]
            left_map -= map_errors[i] ** 2
        for i in sorted(chosen, reverse=True):  # from the end, so earlier indices stay valid
            self._split(i)
        return bool(chosen)

    def _split(self, index: int) -> None:
        piece = self.pieces[index]
        first, second = piece.thirds()
        depth = piece.depth + 1
        # The middle third's midpoint is the piece's own: its node (and slope) carries over.
        self.pieces[index : index + 1] = [
            Piece(piece.lo, first, depth),
            Piece(first, second, depth, piece.slope),
            Piece(second, piece.hi, depth),
        ]

    # -- the rule ---------------------------------------------------------------------------------------
    def nodes(self) -> list[tuple[int, float]]:
        """``(midpoint position, weight)`` of every node, in path order; the weights sum to 1."""
        return [(p.mid, p.width) for p in self.pieces]


def map_errors(plan: PathPlan, contributions: Sequence[Tensor]) -> list[float]:
    """Each piece's estimated error in the map: ``contributions`` are the nodes' ``(x - x') * g`` in path
    order. An inner piece's error is its width times half the distance of its node's contribution from the
    line through its neighbours' (the second difference: the midpoint rule is exact where the integrand is
    linear, and a jump inside the piece shows there as well); an end piece, with one neighbour, takes half
    the first difference. A lone piece's error is unknown (infinite)."""
    n = len(contributions)
    if n == 1:
        return [math.inf]
    where = [alpha(p.mid) for p in plan.pieces]
    errors = []
    for k, piece in enumerate(plan.pieces):
        if k in (0, n - 1):
            other = contributions[1 if k == 0 else n - 2]
            deviation = contributions[k] - other
        else:
            t = (where[k] - where[k - 1]) / (where[k + 1] - where[k - 1])
            deviation = contributions[k] - torch.lerp(contributions[k - 1], contributions[k + 1], t)
        errors.append(0.5 * piece.width * float(torch.linalg.vector_norm(deviation.double())))
    return errors
