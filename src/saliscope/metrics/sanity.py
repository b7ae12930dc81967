"""Sanity checks: does the explanation depend on what the model learned?

Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018:

- :func:`model_randomisation` — re-initialise the model's weights stage by stage, from the output towards
  the input, and compare each randomised model's map with the original. ``"cascading"`` keeps earlier
  stages randomised (the paper's main test); ``"independent"`` randomises one stage at a time. A method
  whose map barely changes when the weights it should explain are destroyed is not explaining the model
  (the paper's finding: guided backprop; Gradient and Grad-CAM pass).
- :func:`random_logit` — the map for a random other class vs the map for the explained class (Sixt et
  al., "When Explanations Lie", ICML 2020; the class-sensitivity counterpart of Adebayo's random-label
  test). A method that draws the same map for every class says nothing about the class.

Maps are compared by Spearman rank correlation of the absolute and of the signed maps, and by SSIM of
the absolute maps (see :mod:`.similarity`). High similarity means the method fails the check.

Randomisation works on ``copy.deepcopy(explainer)``: the copy carries its own model and every module
reference the explainer holds (a CAM's layer, a wrapper's inner explainer) maps consistently into that
model, so the user's model is never changed. Re-initialisation uses each module's own
``reset_parameters()``, run on a CPU scratch copy of the module inside ``torch.random.fork_rng`` seeded
per stage (the weights are the same on every device and the global RNG is left as it was); parameters
of modules without one get a seeded normal draw of the parameter's own standard deviation (0.02 where
that is 0).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ..core.cost import Cost
from ..core.errors import InputError, MethodError, TargetError
from ..core.explanation import Explanation
from ..core.targets import BoundClasses, TargetLike, logits_of
from ..core.validation import check_batch
from ..methods.base import Explainer
from ._common import finished_cost, scoring
from .results import floats
from .robustness import check_explainer, reuse_or_explain
from .similarity import evidence_maps, spearman, ssim

Order = Literal["cascading", "independent"]
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Offsets the stage seeds from the small seeds models are often built with (torch.manual_seed(0)): a stage
# re-initialised from the very stream that built it would get its own weights back.
_SALT = 0x5A11_5C0E


@dataclass(frozen=True)
class Stage:
    """A group of parameters randomised together: ``name`` for reports, ``parameters`` as in
    ``model.named_parameters()``."""

    name: str
    parameters: tuple[str, ...]


def randomisation_stages(model: nn.Module) -> list[Stage]:
    """The default stages of ``model``, from the output towards the input (the cascade's order).

    The model's top-level children in registration order (for most models the order of the forward
    pass), stepping through wrappers that hold all the parameters and opening top-level containers one
    level (timm's ``blocks`` → ``blocks.0`` … ``blocks.6``); a lone normalisation layer joins the layer
    before it (``conv_stem+bn1``). Parameters held directly by the model form a stage of their own at the
    input end (a ViT's ``cls_token+pos_embed``). EfficientNet-Lite0: 10 stages, ``classifier`` first.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"expected an nn.Module, got {type(model).__name__}", "pass the model itself")
    root, prefix = model, ""
    while not list(root.named_parameters(recurse=False)):
        # Step into a wrapper child that holds every parameter, unless it is a single layer itself.
        total = {id(p) for p in root.parameters()}
        inner = [
            (n, c)
            for n, c in root.named_children()
            if {id(p) for p in c.parameters()} == total and any(True for _ in c.children())
        ]
        if not total or not inner:
            break
        name, root = inner[0]
        prefix = f"{prefix}{name}."
    units: list[tuple[str, nn.Module | None, list[str]]] = []
    own = [prefix + n for n, _ in root.named_parameters(recurse=False)]
    if own:
        units.append(("+".join(own), None, own))
    for name, child in root.named_children():
        parts = child.named_children() if isinstance(child, _CONTAINERS) else [("", child)]
        for sub, part in parts:
            full = prefix + (f"{name}.{sub}" if sub else name)
            units.append((full, part, [f"{full}.{n}" for n, _ in part.named_parameters()]))
    params = dict(model.named_parameters())  # first name of each tensor: shared ones are claimed once
    seen: set[int] = set()
    stages: list[Stage] = []
    for name, module, names in units:
        mine = [n for n in names if n in params and id(params[n]) not in seen]
        seen.update(id(params[n]) for n in mine)
        if not mine:
            continue
        if isinstance(module, _NORMS) and stages:
            last = stages.pop()  # a normalisation layer belongs to the layer it normalises
            stages.append(Stage(f"{last.name}+{name}", last.parameters + tuple(mine)))
        else:
            stages.append(Stage(name, tuple(mine)))
    return stages[::-1]


def top_stages(model: nn.Module, n: int) -> Stage:
    """The top ``n`` of :func:`randomisation_stages` (output end) as one stage: the cascade's step after
    ``n`` stages, randomised in one go — what the sanity flag and the comparison chart judge."""
    top = randomisation_stages(model)[:n]
    return Stage("+".join(s.name for s in top), tuple(p for s in top for p in s.parameters))


StageLike = str | Sequence[str] | Stage


def resolve_stages(model: nn.Module, stages: Sequence[StageLike] | None) -> list[Stage]:
    """Stages in the order they are randomised: the default ones, or the user's module / parameter names
    (one name per stage, or several for one stage: a sequence, or joined by ``+`` as stages are named)."""
    if stages is None:
        resolved = randomisation_stages(model)
    else:
        if isinstance(stages, (str, Stage)):
            stages = [stages]
        params = dict(model.named_parameters())
        modules = dict(model.named_modules())
        resolved = []
        for stage in stages:
            if isinstance(stage, Stage):
                resolved.append(stage)
                continue
            names = stage.split("+") if isinstance(stage, str) else list(stage)
            found: list[str] = []
            for name in names:
                if name in params:
                    found.append(name)
                elif name in modules:
                    found.extend(f"{name}.{n}" if name else n for n, _ in modules[name].named_parameters())
                else:
                    default = ", ".join(s.name for s in randomisation_stages(model))
                    raise InputError(
                        f"the model has no module or parameter {name!r}",
                        f"name modules as in model.named_modules(), e.g. one of: {default}",
                    )
            resolved.append(Stage("+".join(names), tuple(dict.fromkeys(found))))
    if not resolved or any(not s.parameters for s in resolved):
        raise InputError("a randomisation stage holds no parameters", "name modules that have weights")
    missing = [n for s in resolved for n in s.parameters if n not in dict(model.named_parameters())]
    if missing:
        raise InputError(f"the model has no parameter {missing[0]!r}", "build stages from this model's names")
    return resolved


def reinitialise(model: nn.Module, stage: Stage, *, seed: int) -> None:
    """Re-initialise the parameters of ``stage`` in ``model`` (in place; call it on a copy).

    A module whose own parameters all belong to the stage is reset by its ``reset_parameters()`` (which
    also resets its buffers, e.g. batch-norm statistics); any other parameter gets a normal draw of its
    own standard deviation. Deterministic in ``seed`` on every device; global RNG state is untouched.
    """
    wanted = set(stage.parameters)
    owners: dict[str, list[str]] = {}
    for name in stage.parameters:
        module, _, attr = name.rpartition(".")
        owners.setdefault(module, []).append(attr)
    generator = torch.Generator().manual_seed(seed)
    # reset_parameters() draws from the global RNG and has no generator argument: fork it, seed the fork,
    # and draw on a CPU scratch copy so that only the CPU generator is used whatever the device.
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.random.default_generator.manual_seed(seed)
        for owner, attrs in owners.items():
            owning = model.get_submodule(owner)
            direct = [n for n, p in owning.named_parameters(recurse=False)]
            prefix = f"{owner}." if owner else ""
            if callable(getattr(owning, "reset_parameters", None)) and all(prefix + n in wanted for n in direct):
                scratch = copy.deepcopy(owning).cpu()
                scratch.reset_parameters()  # type: ignore[operator]
                for n, tensor in [*owning.named_parameters(recurse=False), *owning.named_buffers(recurse=False)]:
                    tensor.copy_(getattr(scratch, n))
                continue
            for attr in attrs:
                p = getattr(owning, attr)
                std = float(p.detach().float().std()) if p.numel() > 1 else 0.0
                draw = torch.randn(p.shape, generator=generator) * (std if std > 0 else 0.02)
                p.copy_(draw)


def randomised_copies(
    explainer: Explainer,
    stages: Sequence[StageLike] | None = None,
    *,
    order: Order = "cascading",
    seed: int = 0,
) -> Iterator[tuple[Stage, Explainer]]:
    """Yield ``(stage, explainer copy)`` with the stage (and, cascading, every stage before it) randomised.

    One deep copy serves all stages: independent stages restore the copy's original weights first. The
    user's explainer and model are never changed. Stage ``i`` is seeded by ``(seed, i)`` (offset by a
    constant), so both orders draw the same weights for a stage.
    """
    explainer = check_explainer(explainer)
    if order not in ("cascading", "independent"):
        raise InputError(f"unknown order {order!r}", "use 'cascading' or 'independent'")
    resolved = resolve_stages(explainer.model, stages)
    try:
        twin = copy.deepcopy(explainer)
    except Exception as exc:  # a model holding something deepcopy cannot copy (an open file, a lock)
        raise MethodError(
            f"cannot copy the explainer and its model for randomisation: {exc}",
            "make the model deep-copyable (copy.deepcopy(model) must work)",
        ) from exc
    if twin.model is explainer.model or _shares_parameters(twin.model, explainer.model):
        raise MethodError(
            "the copied explainer still uses the original model's weights",
            "keep the model in the explainer's .model attribute, not in a closure",
        )
    original = None if order == "cascading" else {k: v.clone() for k, v in twin.model.state_dict().items()}
    for i, stage in enumerate(resolved):
        if original is not None:
            twin.model.load_state_dict(original)
        reinitialise(twin.model, stage, seed=(_SALT + seed * 1_000_003 + i) % 2**63)
        yield stage, twin


def _shares_parameters(a: nn.Module, b: nn.Module) -> bool:
    mine = {p.data_ptr() for p in a.parameters() if p.numel()}
    return any(p.data_ptr() in mine for p in b.parameters() if p.numel())


@dataclass(frozen=True)
class MapSimilarity:
    """How alike two batches of maps are, per sample ``(B,)``: Spearman rank correlation of the absolute
    and of the signed maps, and SSIM of the absolute maps. 1 means identical."""

    spearman_abs: Tensor
    spearman_signed: Tensor
    ssim: Tensor

    @staticmethod
    def of(a: Tensor, b: Tensor) -> MapSimilarity:
        """Compare ``(B, C, H, W)`` attributions ``a`` and ``b``."""
        abs_a, abs_b = evidence_maps(a, "absolute"), evidence_maps(b, "absolute")
        return MapSimilarity(
            spearman(abs_a, abs_b), spearman(evidence_maps(a, "signed"), evidence_maps(b, "signed")), ssim(abs_a, abs_b)
        )


@dataclass(frozen=True)
class RandomisationResult:
    """Model-parameter randomisation test (Adebayo et al. 2018).

    Attributes:
        method: the explainer's name.
        order: ``"cascading"`` or ``"independent"``.
        stages: the stages' names in the order randomised (output towards input).
        spearman_abs, spearman_signed, ssim: ``(S, B)`` similarity of each randomised model's map with the
            original map, per stage and image. Lower is better: a map that depends on the weights changes.
            :attr:`value` is ``spearman_abs`` averaged over the stages, ``(B,)``: for a cascade, the area
            under Adebayo's curve, steadier than its last point alone.
        flat: ``(S, B)`` bool: the randomised model's map was constant (its activations died, e.g. a
            trained batch norm after a random layer clipping everything), so its ρ is 0 by definition.
        cost: the passes of every explanation run (original plus one per stage).
        maps: ``(S, B, C|1, H, W)`` the randomised models' attributions when asked for (``keep_maps``).
    """

    method: str
    order: Order
    stages: tuple[str, ...]
    spearman_abs: Tensor
    spearman_signed: Tensor
    ssim: Tensor
    flat: Tensor
    cost: Cost
    maps: Tensor | None = None
    higher_is_better: ClassVar[bool] = False

    @property
    def value(self) -> Tensor:
        """``(B,)`` the headline number: the absolute maps' rank correlation averaged over the stages."""
        return self.spearman_abs.mean(0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": "model-randomisation",
            "higher_is_better": False,
            "method": self.method,
            "order": self.order,
            "value": floats(self.value),
            "stages": [
                {
                    "stage": name,
                    "spearman_abs": floats(self.spearman_abs[i]),
                    "spearman_signed": floats(self.spearman_signed[i]),
                    "ssim": floats(self.ssim[i]),
                    "flat": [bool(f) for f in self.flat[i]],
                }
                for i, name in enumerate(self.stages)
            ],
            "cost": self.cost.as_dict(),
        }


def model_randomisation(
    explainer: Explainer,
    x: Tensor,
    target: TargetLike = None,
    *,
    order: Order = "cascading",
    stages: Sequence[StageLike] | None = None,
    seed: int = 0,
    keep_maps: bool = False,
    clean: Explanation | None = None,
) -> RandomisationResult:
    """Cascading or independent model-parameter randomisation test (Adebayo et al. 2018).

    Args:
        explainer: the method to check, e.g. ``saliscope.GradCAM(model)``. It is deep-copied; the copy's
            weights are randomised, the user's never are. Seed stochastic explainers (RISE, LIME), or
            their own randomness is measured too.
        x: ``(B, C, H, W)`` preprocessed batch (never modified).
        target: what to explain (default: the predicted class), bound once on the original model: the
            randomised models explain that same class.
        order: ``"cascading"`` (stage ``i`` and all before it random) or ``"independent"`` (only stage ``i``).
        stages: the stages in the order randomised: module or parameter names (``"classifier"``), groups of
            names (``["conv_head", "bn2"]`` or ``"conv_head+bn2"``, as stages are named) or :class:`Stage` s;
            None uses :func:`randomisation_stages` (output towards input). A few of them
            (``randomisation_stages(model)[:3]``) make a cheap test.
        seed: seeds the re-initialisation.
        keep_maps: also return the randomised models' attributions (``(S, B, C|1, H, W)``, for figures).
        clean: ``explainer``'s explanation of ``x`` when it is at hand (then ``target`` is its target and
            it is not made again; its cost is not counted here).

    Returns:
        :class:`RandomisationResult` with ``(S, B)`` similarities. Costs ``1 + S`` explanations (``S``
        with ``clean``).
    """
    x = check_batch(x)
    explainer = check_explainer(explainer)
    clean, cost = reuse_or_explain(explainer, x, target, clean)
    names, sims, flat, kept = [], [], [], []
    for stage, twin in randomised_copies(explainer, stages, order=order, seed=seed):
        randomised = twin.explain(x, clean.target)
        names.append(stage.name)
        sims.append(MapSimilarity.of(clean.attributions, randomised.attributions))
        values = randomised.attributions.flatten(1)
        flat.append((values == values[:, :1]).all(1).cpu())
        cost = cost + randomised.cost
        if keep_maps:
            kept.append(randomised.attributions)
    return RandomisationResult(
        method=clean.method,
        order=order,
        stages=tuple(names),
        spearman_abs=torch.stack([s.spearman_abs for s in sims]),
        spearman_signed=torch.stack([s.spearman_signed for s in sims]),
        ssim=torch.stack([s.ssim for s in sims]),
        flat=torch.stack(flat),
        cost=cost,
        maps=torch.stack(kept) if keep_maps else None,
    )


@dataclass(frozen=True)
class RandomLogitResult:
    """Random-logit test (Sixt et al. 2020): the explained class's map vs a random other class's map.

    Attributes:
        method: the explainer's name.
        classes: ``(B,)`` the explained classes.
        random_classes: ``(B,)`` the other classes drawn.
        spearman_abs, spearman_signed, ssim: ``(B,)`` similarity of the two maps. Lower is better: a map
            that explains *this* class differs from another class's. :attr:`value` is ``spearman_abs``.
        cost: the passes of both explanations (and the forward pass that counts the classes).
    """

    method: str
    classes: Tensor
    random_classes: Tensor
    spearman_abs: Tensor
    spearman_signed: Tensor
    ssim: Tensor
    cost: Cost
    higher_is_better: ClassVar[bool] = False

    @property
    def value(self) -> Tensor:
        """``(B,)`` the headline number: the absolute maps' rank correlation."""
        return self.spearman_abs

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": "random-logit",
            "higher_is_better": False,
            "method": self.method,
            "classes": [int(c) for c in self.classes],
            "random_classes": [int(c) for c in self.random_classes],
            "spearman_abs": floats(self.spearman_abs),
            "spearman_signed": floats(self.spearman_signed),
            "ssim": floats(self.ssim),
            "cost": self.cost.as_dict(),
        }


def random_logit(explainer: Explainer, x: Tensor, target: TargetLike = None, *, seed: int = 0) -> RandomLogitResult:
    """Random-logit test: explain a random class other than the explained one and compare the maps.

    Args:
        explainer: the method to check (any explainer of a classifier).
        x: ``(B, C, H, W)`` preprocessed batch (never modified).
        target: the class to explain (default: the predicted class).
        seed: seeds the choice of the other class: one draw ``r`` from ``0 … K−2`` for the whole batch,
            mapped to the ``r``-th class other than each image's own (so a batch gives what each image
            gives alone).

    Returns:
        :class:`RandomLogitResult` with ``(B,)`` similarities. Costs two explanations and one forward pass.
    """
    x = check_batch(x)
    explainer = check_explainer(explainer)
    clean = explainer.explain(x, target)
    if not isinstance(clean.target, BoundClasses):
        raise TargetError(
            f"the random-logit test needs a class target, got {type(clean.target).__name__}",
            "explain a class of a classifier (a class index, a label or 'predicted')",
        )
    with scoring(explainer.model, x[:1], clean.target.take(torch.arange(1))) as scorer:
        n_classes = int(logits_of(scorer.clean_output).shape[1])
    if n_classes < 2:
        raise TargetError("the model has a single output: there is no other class", "use a classifier with 2+ classes")
    r = int(torch.randint(n_classes - 1, (1,), generator=torch.Generator().manual_seed(seed)))
    classes = clean.target.classes
    other = r + (classes <= r).long()  # the r-th class among the K−1 that are not the image's own
    contrast: Explanation = explainer.explain(x, BoundClasses(other, clean.target.space))
    sim = MapSimilarity.of(clean.attributions, contrast.attributions)
    return RandomLogitResult(
        clean.method,
        classes.clone(),
        other,
        sim.spearman_abs,
        sim.spearman_signed,
        sim.ssim,
        clean.cost + finished_cost(scorer) + contrast.cost,
    )
