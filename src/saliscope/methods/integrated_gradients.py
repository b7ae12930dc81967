"""Integrated Gradients (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ..core.chunking import default_budget, image_rows
from ..core.cost import CostMeter
from ..core.errors import MethodError
from ..core.memory_layout import in_preferred_layout
from ..core.targets import BoundTarget
from ..core.validation import real, whole
from .adaptive_quadrature import UNIT, PathPlan, alpha, map_errors, triadic_positions
from .base import Attribution, Explainer, Precision
from .baselines import BaselineLike, as_baseline
from .gradient import gradient_net, input_gradients
from .quadrature import RULES, Rule, quadrature

IGRule = Rule | Literal["adaptive"]
DEFAULT_MAX_EVALS = 96
SCAN_DEPTH = 3  # the forward-only scan: 3**3 + 1 = 28 points per image


class IntegratedGradients(Explainer):
    """Integrated Gradients: ``(x - x') * integral_0^1 grad f(x' + a (x - x')) da``.

    **Adaptive by default.** Along the path, the change of the score between two points is the exact
    integral of the gradient's projection there, so every piece of the path has a known completeness
    residual. A forward-only scan of the score at 28 points (batched, cheap) places the first gradient
    nodes; then the pieces whose residual is largest are refined (split in thirds, the midpoint rule on
    each: nested, so no gradient is wasted) until the pieces' ``|residual|`` sum to at most ``tolerance *
    |f(x) - f(x')|`` — which bounds the completeness gap by the same amount — or ``max_evals`` gradients
    are spent. See :mod:`saliscope.methods.adaptive_quadrature` for the rule and what it builds on
    (adaptive quadrature; non-uniform IG: Bhat & Raychowdhury 2023, Kapishnikov et al. 2021).

    **Fixed quadrature** when ``n_steps`` or a ``rule`` is passed: ``n_steps`` nodes of Gauss–Legendre
    (or a Riemann rule), as Captum and the paper do.

    All path points run in memory-bounded chunks; the images of a batch refine independently but share
    chunks, and a batch gives what each image gives alone. Each explanation reports the completeness gap
    ``sum(attr) - (f(x) - f(x'))`` per sample and the extras ``input_scores``, ``baseline_scores``,
    ``evaluations`` (gradient evaluations per image), ``converged`` (bool per image: the gap met the
    tolerance — for the adaptive rule, the bound on it did), and for the adaptive rule ``nodes`` and
    ``weights`` ``(B, N)`` (path coordinates in [0, 1] and their weights, NaN past each image's own count).

    Args:
        model: the classifier.
        tolerance: the relative completeness gap to reach, ``|gap| / |f(x) - f(x')|`` (Sundararajan et al.
            recommend checking that it is within 5%).
        max_evals: the adaptive rule's budget of gradient evaluations per image (default 96).
        n_steps: fixed quadrature with this many nodes (Gauss–Legendre unless ``rule`` says otherwise).
        baseline: ``"zero"`` (model-space zeros), ``"black"`` (needs ``model.preprocess``), ``"blur"``,
            ``"uniform"``, a :class:`~saliscope.methods.baselines.Baseline`, or a tensor.
        rule: ``"adaptive"`` (the default when ``n_steps`` is not given), ``"gauss-legendre"`` or a Riemann
            rule (``riemann-left`` / ``-right`` / ``-middle`` / ``-trapezoid``; 32 steps unless ``n_steps``).
    """

    name: ClassVar[str] = "integrated-gradients"
    on_folded_copy: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        *,
        tolerance: float = 0.05,
        max_evals: int | None = None,
        n_steps: int | None = None,
        baseline: BaselineLike = "zero",
        rule: IGRule | None = None,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        precision: Precision = "auto",
    ) -> None:
        super().__init__(model, chunk_size=chunk_size, memory_budget=memory_budget, precision=precision)
        self.tolerance = real("tolerance", tolerance, "use e.g. tolerance=0.05 (a 5% completeness gap)", above=0)
        if rule is None:
            rule = "adaptive" if n_steps is None else "gauss-legendre"
        if rule == "adaptive":
            if n_steps is not None:
                raise MethodError(
                    f"n_steps={n_steps} fixes the number of steps, and rule='adaptive' chooses it",
                    "pass max_evals= to bound the adaptive rule, or a fixed rule such as rule='gauss-legendre'",
                    "omit --n-steps to integrate adaptively (bounded by --max-evals)",
                )
            budget = DEFAULT_MAX_EVALS if max_evals is None else max_evals
            self.max_evals = whole("max_evals", budget, f"use e.g. max_evals={DEFAULT_MAX_EVALS}", minimum=3)
            self.alphas = self.weights = None
        elif rule in RULES:
            if max_evals is not None:
                raise MethodError(
                    f"max_evals={max_evals} bounds the adaptive rule, and rule={rule!r} has fixed steps",
                    "pass n_steps= for a fixed rule, or omit n_steps and rule to integrate adaptively",
                    "omit --n-steps to integrate adaptively (bounded by --max-evals)",
                )
            self.alphas, self.weights = quadrature(rule, 32 if n_steps is None else n_steps)  # validates both
            self.max_evals = int(self.alphas.numel())
        else:
            raise MethodError(f"unknown integration rule {rule!r}", f"use 'adaptive' or one of {', '.join(RULES)}")
        self.rule: IGRule = rule
        self.n_steps = None if rule == "adaptive" else self.max_evals
        self.baseline = as_baseline(baseline)

    @property
    def adaptive(self) -> bool:
        return self.rule == "adaptive"

    @property
    def rows_per_sample(self) -> int:
        return self.max_evals  # the adaptive rule's most; wrappers size their chunks by it

    def params(self) -> dict[str, Any]:
        budget = {"max_evals": self.max_evals} if self.adaptive else {}
        return {
            **super().params(),
            "n_steps": self.n_steps,
            "rule": self.rule,
            "tolerance": self.tolerance,
            **budget,
            "baseline": self.baseline.describe(),
        }

    def _attribute(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        baseline = self.baseline(x, self.model)
        if baseline.shape != x.shape:
            raise MethodError(f"baseline shape {tuple(baseline.shape)} != input {tuple(x.shape)}", "fix the baseline")
        delta = x - baseline
        if self.adaptive:
            attributions, extras = self._adaptive(net, x, baseline, delta, target, meter)
            input_scores, baseline_scores = extras.pop("input_scores"), extras.pop("baseline_scores")
        else:
            attributions = delta * self._fixed(net, baseline, delta, target, meter)
            n = int(x.shape[0])
            both = target.take(torch.arange(n).repeat(2))(self.forward_chunked(net, torch.cat([x, baseline]), meter))
            input_scores, baseline_scores = both[:n], both[n:]
            extras = {"evaluations": torch.full((n,), self.max_evals, device=x.device)}
        change = input_scores - baseline_scores
        gap = attributions.flatten(1).sum(1) - change
        if "converged" not in extras:
            extras["converged"] = gap.abs() <= self.tolerance * change.abs()
        return Attribution(
            attributions,
            scores=input_scores,
            completeness_gap=gap,
            extras={"input_scores": input_scores, "baseline_scores": baseline_scores, **extras},
        )

    # -- fixed quadrature --------------------------------------------------------------------------------
    def _fixed(self, net: nn.Module, baseline: Tensor, delta: Tensor, target: BoundTarget, meter: CostMeter) -> Tensor:
        assert self.alphas is not None and self.weights is not None
        n, steps = int(delta.shape[0]), int(self.alphas.numel())
        alphas = self.alphas.to(device=delta.device, dtype=delta.dtype)
        weights = self.weights.to(device=delta.device, dtype=delta.dtype)
        total = torch.zeros_like(delta)
        fast = gradient_net(net, baseline, steps, meter)  # by the steps per image: a batch runs as each alone
        # Row r of the flattened work is path point (sample r // steps, step r % steps).
        spans = self.chunker.spans(n * steps, key=self.chunk_key(delta), device=delta.device, params=net.parameters)
        for start, stop in spans:
            rows = torch.arange(start, stop)
            sample, step = rows // steps, (rows % steps).to(delta.device)
            points = image_rows(baseline, sample) + alphas[step].view(-1, 1, 1, 1) * image_rows(delta, sample)
            grads, _ = input_gradients(net, points, target.take(sample), meter, fast)
            total.index_add_(0, sample.to(delta.device), grads * weights[step].view(-1, 1, 1, 1))
        return total

    # -- adaptive quadrature -----------------------------------------------------------------------------
    def _adaptive(
        self, net: nn.Module, x: Tensor, baseline: Tensor, delta: Tensor, target: BoundTarget, meter: CostMeter
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(B, C, H, W)`` attributions and the extras, in groups of images small enough that their kept node
        contributions (one per node, up to ``max_evals``) fit the memory budget."""
        n = int(delta.shape[0])
        budget = self.chunker.memory_budget or default_budget(delta.device)
        per_image = self.max_evals * delta[0].numel() * delta.element_size()
        group = max(1, budget // max(per_image, 1))
        totals, plans, scores = [], [], []
        for start in range(0, n, group):
            rows = torch.arange(start, min(n, start + group))
            total, group_plans = self._refine(net, x[rows], baseline[rows], delta[rows], target.take(rows), meter)
            totals.append(total)
            plans.extend(group_plans)
        for plan in plans:
            scores.append((plan.scores[UNIT], plan.scores[0]))
        device, dtype = delta.device, delta.dtype
        width = max(p.evaluations for p in plans)
        nodes = torch.full((n, width), math.nan, dtype=torch.float64)
        weights = torch.full((n, width), math.nan, dtype=torch.float64)
        for i, plan in enumerate(plans):
            for j, (position, weight) in enumerate(plan.nodes()):
                nodes[i, j], weights[i, j] = alpha(position), weight
        extras = {
            "input_scores": torch.tensor([s[0] for s in scores], device=device, dtype=dtype),
            "baseline_scores": torch.tensor([s[1] for s in scores], device=device, dtype=dtype),
            "evaluations": torch.tensor([p.evaluations for p in plans], device=device),
            "converged": torch.tensor([p.converged for p in plans], device=device),
            "nodes": nodes.to(device=device, dtype=dtype),
            "weights": weights.to(device=device, dtype=dtype),
        }
        return torch.cat(totals), extras

    def _refine(
        self, net: nn.Module, x: Tensor, baseline: Tensor, delta: Tensor, target: BoundTarget, meter: CostMeter
    ) -> tuple[Tensor, list[PathPlan]]:
        """One group's attributions ``(n, C, H, W)`` and its plans: scan, then rounds of gradients and splits."""
        n = int(delta.shape[0])
        # The ends on the model itself (the scores reported with the gap); the inside may use a faster copy.
        both = target.take(torch.arange(n).repeat(2))(self.forward_chunked(net, torch.cat([x, baseline]), meter))
        ends: list[float] = both.double().cpu().tolist()
        scan = triadic_positions(SCAN_DEPTH)[1:-1]
        # The inside runs on the folded copy when one image's passes pay for it: decided once, by the image's
        # own budget, so a batch gives what each image gives alone whatever ran before.
        fast = gradient_net(net, baseline, len(scan) + self.max_evals, meter)
        found = self._scores(net, baseline, delta, target, [(i, p) for i in range(n) for p in scan], meter, fast)
        plans = []
        for i in range(n):
            known = dict(zip(scan, found[i * len(scan) : (i + 1) * len(scan)], strict=True))
            known[0], known[UNIT] = ends[n + i], ends[i]
            plan = PathPlan(known, tolerance=self.tolerance, max_evals=self.max_evals, scan_depth=SCAN_DEPTH)
            plan.presplit(budget=self.max_evals // 2)
            plans.append(plan)
        # Each node's contribution to the map, (x - x') * g, kept until the end: nodes are never discarded.
        kept: list[dict[int, Tensor]] = [{} for _ in range(n)]
        while True:
            wanted = [(i, p) for i, plan in enumerate(plans) for p in plan.unscored()]
            if wanted:
                scored = self._scores(net, baseline, delta, target, wanted, meter, fast)
                for (i, p), s in zip(wanted, scored, strict=True):
                    plans[i].scores[p] = s
            pieces = [(i, piece) for i, plan in enumerate(plans) for piece in plan.unmeasured()]
            if pieces:
                rows = [(i, piece.mid) for i, piece in pieces]
                measured = self._gradients(net, baseline, delta, target, rows, meter, fast)
                for (i, piece), grad in zip(pieces, measured, strict=True):
                    kept[i][piece.mid] = contribution = grad * delta[i]
                    piece.slope = float(contribution.double().sum())
            refined = []
            for i, plan in enumerate(plans):  # every plan, not up to the first that refines
                nodes = [kept[i][piece.mid] for piece in plan.pieces]
                estimate = sum((piece.width * c for piece, c in zip(plan.pieces, nodes, strict=True)), torch.zeros(()))
                norm = float(torch.linalg.vector_norm(estimate.double()))
                refined.append(plan.refine(map_errors(plan, nodes), norm))
            if not any(refined):
                break
        total = torch.zeros_like(delta)
        for i, plan in enumerate(plans):
            for position, weight in plan.nodes():
                total[i].add_(kept[i][position], alpha=weight)
        return total, plans

    def _points(self, baseline: Tensor, delta: Tensor, rows: list[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        sample = torch.tensor([i for i, _ in rows])
        a = torch.tensor([alpha(p) for _, p in rows], dtype=torch.float64).to(device=delta.device, dtype=delta.dtype)
        return image_rows(baseline, sample) + a.view(-1, 1, 1, 1) * image_rows(delta, sample), sample

    def _scores(
        self,
        net: nn.Module,
        baseline: Tensor,
        delta: Tensor,
        target: BoundTarget,
        rows: list[tuple[int, int]],
        meter: CostMeter,
        fast: nn.Module | None,
    ) -> list[float]:
        """The score at each ``(image, position)`` row: forward passes only, in chunks, on ``fast`` (the folded
        copy, see :func:`~saliscope.methods.gradient.gradient_net`) when given."""
        key = ("ig-scan", tuple(delta.shape[1:]), delta.dtype, delta.device.type)
        out: list[float] = []
        spans = self.chunker.spans(len(rows), key=key, device=delta.device, params=net.parameters, forward_only=True)
        with torch.no_grad():
            for start, stop in spans:
                points, sample = self._points(baseline, delta, rows[start:stop])
                output = in_preferred_layout(net, points, fast or net)
                meter.forward(stop - start)
                out.extend(float(v) for v in target.take(sample)(output).double().cpu())
        return out

    def _gradients(
        self,
        net: nn.Module,
        baseline: Tensor,
        delta: Tensor,
        target: BoundTarget,
        rows: list[tuple[int, int]],
        meter: CostMeter,
        fast: nn.Module | None,
    ) -> list[Tensor]:
        """The input gradient at each ``(image, position)`` row, in chunks, differentiating ``fast`` when given."""
        out: list[Tensor] = []
        spans = self.chunker.spans(len(rows), key=self.chunk_key(delta), device=delta.device, params=net.parameters)
        for start, stop in spans:
            points, sample = self._points(baseline, delta, rows[start:stop])
            grads, _ = input_gradients(net, points, target.take(sample), meter, fast)
            out.extend(grads.unbind(0))
        return out
