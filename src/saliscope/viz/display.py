"""How each method's attributions are best shown: which channel reduction, which evidence.

A view choice, not part of the explanation: the raw signed attributions stay in the Explanation.

- Methods whose attributions add up to the score change (gradient × input, integrated gradients) are
  summed over colour channels and shown signed: a pixel's net push for or against the class.
- Plain gradients (and their SmoothGrad / guided-backprop variants) are sensitivities, whose sign per
  channel says little; they are shown as the largest magnitude over channels (Simonyan et al. 2014).
- SmoothGrad² and VarGrad are already non-negative; they are summed and shown unsigned.
- CAMs and attention rollouts give one value per pixel; by default their positive evidence (the papers'
  ReLU maps). With ``--evidence negative`` a CAM is computed as its counterfactual map, and shown so.
- Perturbation methods (occlusion, RISE, LIME, KernelSHAP) give one signed value per pixel: a score
  change, a centred score-weighted mask mean, or a superpixel's coefficient; shown signed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.views import Evidence, Reduction

_UNSIGNED_REDUCTIONS = ("max-abs", "sum-abs", "l2")


@dataclass(frozen=True)
class DisplayHint:
    """Channel reduction and evidence to show; ``signed`` picks a diverging colormap."""

    reduce: Reduction
    evidence: Evidence

    @property
    def signed(self) -> bool:
        return self.evidence == "signed"

    def with_evidence(self, evidence: Evidence | None) -> DisplayHint:
        """The hint with the user's choice of evidence; a sign-dropping reduction becomes a sum."""
        if evidence is None or evidence == self.evidence:
            return self
        reduce = self.reduce
        if evidence != "absolute" and reduce in _UNSIGNED_REDUCTIONS:
            reduce = "sum"  # positive / negative / signed evidence needs a reduction that keeps the sign
        return DisplayHint(reduce, evidence)


_HINTS: dict[str, DisplayHint] = {
    "gradient": DisplayHint("max-abs", "absolute"),
    "smoothgrad": DisplayHint("max-abs", "absolute"),
    "guided-backprop": DisplayHint("max-abs", "absolute"),
    "gradient-x-input": DisplayHint("sum", "signed"),
    "integrated-gradients": DisplayHint("sum", "signed"),
    "smoothgrad-squared": DisplayHint("sum", "absolute"),
    "vargrad": DisplayHint("sum", "absolute"),
    "guided-gradcam": DisplayHint("max-abs", "absolute"),
    **{
        name: DisplayHint("sum", "positive")
        for name in (
            "gradcam",
            "gradcam-plus-plus",
            "hirescam",
            "xgradcam",
            "layercam",
            "eigencam",
            "scorecam",
            "ablationcam",
            "attention-rollout",
            "gradient-rollout",
        )
    },
    # perturbation methods: one signed value per pixel. RISE is centred on the mean score, so
    # its sign means "keeping this visible raises / lowers the score against the average mask".
    **{name: DisplayHint("sum", "signed") for name in ("occlusion", "rise", "drise", "lime", "kernel-shap")},
}
# Methods not in the table give one signed value per pixel already.
_DEFAULT = DisplayHint("sum", "signed")


def display_hint(method: str, evidence: Evidence | None = None) -> DisplayHint:
    """How to show ``method``'s maps (its registry name), optionally overriding the evidence."""
    return _HINTS.get(method, _DEFAULT).with_evidence(evidence)
