"""Every method by name: what the CLI offers and what the shared invariant tests run over.

A method registers a builder ``(model, MethodOptions) -> Explainer``; options a method does not use
are ignored, so one command line can ask for several methods at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from .core.errors import MethodError
from .methods.base import Explainer, Precision
from .methods.cam import (
    CAM,
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    GuidedGradCAM,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from .methods.gradient import Gradient, GradientXInput
from .methods.guided_backprop import GuidedBackprop
from .methods.integrated_gradients import IntegratedGradients
from .methods.transformer import AttentionRollout, GradientRollout
from .wrappers.smoothing import SmoothGrad


@dataclass(frozen=True)
class MethodOptions:
    """Options shared by the command line's methods."""

    seed: int | None = 0
    n_samples: int = 50
    sigma: float = 0.15
    n_steps: int | None = None  # Integrated Gradients: None integrates adaptively; a number fixes the steps
    tolerance: float = 0.05  # Integrated Gradients: the relative completeness gap to reach
    max_evals: int | None = None  # Integrated Gradients: the adaptive rule's budget; None: its default
    baseline: str | None = None  # None: black when the model carries its normalisation, else zero
    chunk_size: int | None = None
    precision: Precision = "auto"
    layer: str | None = None  # CAMs: the layer to read; None chooses automatically
    evidence: str | None = None  # CAMs: positive (default), negative (counterfactual) or signed
    window: int | None = None  # occlusion: window side in pixels; None: min(H, W) / 14
    stride: int | None = None  # occlusion: step between windows; None: half the window
    n_perturbations: int | None = None  # RISE masks / LIME and KernelSHAP samples; None: each method's default
    n_superpixels: int = 50  # LIME and KernelSHAP: about how many SLIC superpixels

    def common(self) -> dict[str, Any]:
        """Keyword arguments every explainer takes."""
        return {"chunk_size": self.chunk_size, "precision": self.precision}


@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str  # for figures
    summary: str
    build: Callable[[nn.Module, MethodOptions], Explainer]
    needs_attention: bool = False  # only for Vision Transformers (attention rollout)
    needs_detector: bool = False  # only for object detectors (D-RISE)


def _baseline(model: nn.Module, options: MethodOptions) -> str:
    if options.baseline is not None:
        return options.baseline
    return "black" if getattr(getattr(model, "preprocess", None), "normalize", None) else "zero"


_METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in _METHODS:
        raise ValueError(f"method {spec.name!r} is registered twice")
    _METHODS[spec.name] = spec
    return spec


def available() -> list[str]:
    return list(_METHODS)


_ALIASES = {
    "grad-cam": "gradcam",
    "gradcam++": "gradcam-plus-plus",
    "grad-cam++": "gradcam-plus-plus",
    "gradcampp": "gradcam-plus-plus",
    "score-cam": "scorecam",
    "ablation-cam": "ablationcam",
    "eigen-cam": "eigencam",
    "layer-cam": "layercam",
    "xgrad-cam": "xgradcam",
    "hires-cam": "hirescam",
    "guided-grad-cam": "guided-gradcam",
    "rollout": "attention-rollout",
    "ig": "integrated-gradients",
}


def get(name: str) -> MethodSpec:
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _METHODS:
        import difflib

        close = difflib.get_close_matches(key, list(_METHODS), n=2)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise MethodError(f"unknown method {name!r}", f"{hint}available: {', '.join(_METHODS)}")
    return _METHODS[key]


def create(name: str, model: nn.Module, options: MethodOptions | None = None) -> Explainer:
    """Build the explainer registered as ``name`` for ``model``."""
    return get(name).build(model, options or MethodOptions())


def _smooth(mode: str) -> Callable[[nn.Module, MethodOptions], Explainer]:
    def build(model: nn.Module, o: MethodOptions) -> Explainer:
        inner = Gradient(model, **o.common())
        return SmoothGrad(inner, n_samples=o.n_samples, sigma=o.sigma, mode=mode, seed=o.seed)  # type: ignore[arg-type]

    return build


register(MethodSpec("gradient", "Gradient", "vanilla gradient (Simonyan 2014)", lambda m, o: Gradient(m, **o.common())))
register(
    MethodSpec(
        "gradient-x-input",
        "Gradient × Input",
        "gradient times input (Shrikumar 2016)",
        lambda m, o: GradientXInput(m, **o.common()),
    )
)
register(
    MethodSpec(
        "guided-backprop",
        "Guided Backprop",
        "guided backpropagation (Springenberg 2015)",
        lambda m, o: GuidedBackprop(m, **o.common()),
    )
)


def _integrated_gradients(model: nn.Module, o: MethodOptions) -> Explainer:
    return IntegratedGradients(
        model,
        n_steps=o.n_steps,
        tolerance=o.tolerance,
        max_evals=o.max_evals,
        baseline=_baseline(model, o),  # type: ignore[arg-type]
        **o.common(),
    )


register(
    MethodSpec(
        "integrated-gradients",
        "Integrated Gradients",
        "Integrated Gradients, adaptive steps (Sundararajan 2017)",
        _integrated_gradients,
    )
)
register(MethodSpec("smoothgrad", "SmoothGrad", "SmoothGrad over the gradient (Smilkov 2017)", _smooth("mean")))
register(MethodSpec("smoothgrad-squared", "SmoothGrad²", "SmoothGrad² over the gradient", _smooth("squared")))
register(MethodSpec("vargrad", "VarGrad", "variance of noisy gradients (Adebayo 2018)", _smooth("variance")))


# -- the CAM family and transformer methods ------------------------------------------------------------
_CAM_EVIDENCE = {
    None: "positive",
    "positive": "positive",
    "negative": "negative",
    "signed": "signed",
    "absolute": "signed",
}


def _cam(cls: type[CAM]) -> Callable[[nn.Module, MethodOptions], Explainer]:
    def build(model: nn.Module, o: MethodOptions) -> Explainer:
        return cls(model, layer=o.layer, evidence=_CAM_EVIDENCE[o.evidence], **o.common())  # type: ignore[arg-type]

    return build


for _cls, _title, _summary in (
    (GradCAM, "Grad-CAM", "gradient-weighted class activation map (Selvaraju 2017)"),
    (GradCAMPlusPlus, "Grad-CAM++", "Grad-CAM with higher-order channel weights (Chattopadhyay 2018)"),
    (HiResCAM, "HiResCAM", "element-wise gradient × activation (Draelos 2020)"),
    (XGradCAM, "XGrad-CAM", "activation-normalised gradient weights (Fu 2020)"),
    (LayerCAM, "LayerCAM", "positive gradients as element weights (Jiang 2021)"),
    (EigenCAM, "Eigen-CAM", "first principal component of the activations, class-agnostic (Muhammad 2020)"),
    (ScoreCAM, "Score-CAM", "channels weighted by the score of the input they mask (Wang 2020)"),
    (AblationCAM, "Ablation-CAM", "channels weighted by the score drop when zeroed (Desai 2020)"),
    (GuidedGradCAM, "Guided Grad-CAM", "guided backprop × Grad-CAM (Selvaraju 2017)"),
):
    register(MethodSpec(_cls.name, _title, _summary, _cam(_cls)))
register(
    MethodSpec(
        "attention-rollout",
        "Attention rollout",
        "attention rollout for ViTs (Abnar 2020)",
        lambda m, o: AttentionRollout(m, **o.common()),
        needs_attention=True,
    )
)
register(
    MethodSpec(
        "gradient-rollout",
        "Gradient rollout",
        "gradient-weighted attention rollout (Chefer 2021)",
        lambda m, o: GradientRollout(m, **o.common()),
        needs_attention=True,
    )
)


# perturbation methods
from .methods.perturbation import DRISE, LIME, RISE, KernelSHAP, Occlusion  # noqa: E402


def _counted(o: MethodOptions, name: str) -> dict[str, Any]:
    return {} if o.n_perturbations is None else {name: o.n_perturbations}


def _random(o: MethodOptions) -> dict[str, Any]:
    return {"seed": o.seed, **o.common()}


register(
    MethodSpec(
        "occlusion",
        "Occlusion",
        "score drop when sliding windows are hidden (Zeiler & Fergus 2014)",
        lambda m, o: Occlusion(m, window=o.window, stride=o.stride, **o.common()),
    )
)
register(
    MethodSpec(
        "rise",
        "RISE",
        "score-weighted random masks, centred (Petsiuk 2018)",
        lambda m, o: RISE(m, **_counted(o, "n_masks"), **_random(o)),
    )
)
register(
    MethodSpec(
        "lime",
        "LIME",
        "weighted linear surrogate over superpixels (Ribeiro 2016)",
        lambda m, o: LIME(m, n_superpixels=o.n_superpixels, **_counted(o, "n_samples"), **_random(o)),
    )
)
register(
    MethodSpec(
        "kernel-shap",
        "KernelSHAP",
        "Shapley values of superpixels by regression (Lundberg 2017)",
        lambda m, o: KernelSHAP(m, n_superpixels=o.n_superpixels, **_counted(o, "n_samples"), **_random(o)),
    )
)
register(
    MethodSpec(
        "drise",
        "D-RISE",
        "random masks weighted by detection similarity (Petsiuk 2021)",
        lambda m, o: DRISE(m, **_counted(o, "n_masks"), **_random(o)),
        needs_detector=True,
    )
)
