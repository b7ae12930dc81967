"""LIME and KernelSHAP over superpixels: one sampler, one solver, two weightings (see ``coalitions``)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...core.cost import CostMeter
from ...core.errors import InputError
from ...core.targets import BoundTarget
from ..base import Attribution, Precision
from .base import PerturbationExplainer, Seeded, check_count
from .coalitions import (
    draw_coalitions,
    fit_efficient,
    fit_with_intercept,
    lime_size_law,
    lime_weights,
    shapley_size_law,
)
from .fill import Replacement
from .superpixels import Segmenter, check_segmenter, paint, segment


class SuperpixelSurrogate(Seeded, PerturbationExplainer):
    """Fit a linear model of the score over which superpixels are kept; its coefficients are the map.

    Every pixel gets the coefficient of its superpixel, so maps are ``(B, 1, H, W)`` and signed. Extras:
    ``superpixels`` ``(B, 1, H, W)`` labels, ``coefficients`` ``(B, S_max)`` (zero-padded past each image's
    own count) and ``intercept`` ``(B,)``. Each image draws its coalitions from the same seed, so a batch
    is explained as each image alone. Cost: ``n_samples`` forward passes per image.

    Args: see :class:`LIME`; ``alpha=None`` takes the method's default.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        n_samples: int = 1000,
        superpixels: Segmenter = "slic",
        n_superpixels: int = 50,
        compactness: float = 10.0,
        alpha: float | None = None,
        seed: int | None = None,
        replacement: Replacement = "constant",
        value: float = 0.0,
        blur_sigma: float = 10.0,
        progress: bool | None = None,
        chunk_size: int | None = None,
        memory_budget: int | None = None,
        precision: Precision = "auto",
    ) -> None:
        super().__init__(
            model,
            replacement=replacement,
            value=value,
            blur_sigma=blur_sigma,
            progress=progress,
            chunk_size=chunk_size,
            memory_budget=memory_budget,
            precision=precision,
        )
        self.n_samples = check_count("n_samples", n_samples, minimum=self.min_samples)
        check_segmenter(superpixels)
        self.superpixels = superpixels
        self.n_superpixels = check_count("n_superpixels", n_superpixels, example=50)
        alpha = self.default_alpha if alpha is None else alpha
        if not alpha >= 0:
            raise InputError(f"alpha must be >= 0, got {alpha}", "use alpha=0 for plain least squares")
        self.alpha = float(alpha)
        self.compactness = float(compactness)
        self.seed = seed

    min_samples: ClassVar[int] = 1
    default_alpha: ClassVar[float] = 0.0

    @property
    def rows_per_sample(self) -> int:
        return self.n_samples

    def params(self) -> dict[str, Any]:
        segmenter = self.superpixels if isinstance(self.superpixels, str) else "custom"
        return {
            **super().params(),
            "n_samples": self.n_samples,
            "superpixels": segmenter,
            "n_superpixels": self.n_superpixels,
            "alpha": self.alpha,
            "seed": self.seed,
        }

    @abstractmethod
    def coalitions(self, n_features: int, generator: torch.Generator) -> Tensor:
        """``(n_samples, S)`` float64 0/1 coalitions for one image."""

    @abstractmethod
    def fit(self, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Coefficients ``(S,)`` and intercept from coalitions ``(n, S)`` and their scores ``(n,)`` (float64)."""

    def _perturb(self, net: nn.Module, x: Tensor, targets: list[BoundTarget], meter: CostMeter) -> list[Attribution]:
        seed = self.run_seed()
        made = segment(x, self.superpixels, n_segments=self.n_superpixels, compactness=self.compactness)
        labels, counts = made.labels, made.counts
        b, width = int(x.shape[0]), max(counts)
        # Every image draws from the same seed: equal superpixel counts give equal coalitions.
        z = torch.zeros((b, self.n_samples, width), dtype=torch.float64)
        for i, count in enumerate(counts):
            z[i, :, :count] = self.coalitions(count, self.generator(seed))
        z_dev = z.to(device=x.device, dtype=x.dtype)
        flat_labels = labels.flatten(1)

        def keep(sample: Tensor, index: Tensor) -> Tensor:
            kept = z_dev[sample, index].gather(1, flat_labels[sample])
            return kept.view(-1, 1, *x.shape[-2:])

        scores = self.all_scores(net, x, targets, meter, n=self.n_samples, keep=keep).cpu()  # (K, B, n)
        results = []
        for k in range(len(targets)):
            coef = torch.zeros((b, width), dtype=torch.float64)
            intercept = torch.zeros(b, dtype=torch.float64)
            for i, count in enumerate(counts):
                coef[i, :count], intercept[i] = self.fit(z[i, :, :count], scores[k, i])
            coef_dev = coef.to(device=x.device, dtype=x.dtype)
            results.append(
                Attribution(
                    paint(coef_dev, labels),
                    extras={
                        "superpixels": labels.unsqueeze(1),
                        "coefficients": coef_dev,
                        "intercept": intercept.to(device=x.device, dtype=x.dtype),
                    },
                    params={"seed": seed, "segmentation": made.used, "superpixels_found": counts},
                )
            )
        return results


class LIME(SuperpixelSurrogate):
    """LIME on superpixels (Ribeiro, Singh & Guestrin, "Why Should I Trust You?", KDD 2016).

    Draws ``n_samples`` coalitions (the first keeps every superpixel, the others keep each with
    probability 1/2), weighs each by ``exp(-d² / kernel_width²)`` with ``d`` its cosine distance to the
    unperturbed image, and fits a weighted ridge regression (penalty ``alpha``, free intercept) in closed
    form. The defaults are ``lime_image``'s (1000 samples, kernel width 0.25, ridge alpha 1).

    Args:
        model: the classifier.
        kernel_width: width of the exponential kernel on the cosine distance.
        **options: the sampling and fill options below.

    Other parameters:
        n_samples (int): perturbed images per image.
        superpixels (Segmenter): ``"slic"``, ``"quickshift"``, ``"grid"`` or a labelling function (see
            :func:`~saliscope.methods.perturbation.superpixels.superpixels`).
        n_superpixels (int): about how many superpixels SLIC and the grid make.
        compactness (float): SLIC's trade-off between colour and space (higher: squarer regions).
        alpha (float | None): ridge penalty (0: plain weighted least squares, minimum-norm when
            underdetermined; default 1).
        seed (int | None): seeds the coalitions; None draws a seed, recorded in the explanation's params.
        replacement (Replacement): what hidden pixels become (see :class:`PerturbationExplainer`).
        value (float): the constant for ``replacement="constant"``.
        blur_sigma (float): the blur's standard deviation in pixels for ``replacement="blur"``.
        progress (bool | None): ``True`` shows a tqdm bar, ``False`` never; ``None`` only for long runs on a
            terminal.
    """

    name: ClassVar[str] = "lime"
    default_alpha: ClassVar[float] = 1.0

    def __init__(self, model: nn.Module, *, kernel_width: float = 0.25, **options: Any) -> None:
        super().__init__(model, **options)
        if not kernel_width > 0:
            raise InputError(f"kernel_width must be > 0, got {kernel_width}", "use e.g. kernel_width=0.25")
        self.kernel_width = float(kernel_width)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "kernel_width": self.kernel_width}

    def coalitions(self, n_features: int, generator: torch.Generator) -> Tensor:
        drawn = draw_coalitions(self.n_samples - 1, n_features, generator, lime_size_law(n_features))
        return torch.cat([torch.ones((1, n_features), dtype=torch.float64), drawn])

    def fit(self, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return fit_with_intercept(z, y, lime_weights(z, self.kernel_width), self.alpha)


class KernelSHAP(SuperpixelSurrogate):
    """KernelSHAP on superpixels (Lundberg & Lee, "A Unified Approach to Interpreting Model
    Predictions", NeurIPS 2017): Shapley values of the superpixels, estimated by weighted regression.

    The first two samples keep every superpixel and none; they pin the intercept to ``f(none)`` and the
    coefficients' sum to ``f(x) - f(none)``. The other ``n_samples - 2`` coalitions are drawn from the
    Shapley kernel's size law, in complementary pairs, and fitted by least squares (ridge ``alpha``,
    0 by default). A model that is additive over the superpixels gets its exact contributions back.

    Its map may have the opposite sign of LIME's, both correct: the Shapley value averages a superpixel's
    effect over every coalition size, weighing nearly empty images (a few superpixels on the fill) as much
    as nearly full ones, while LIME looks at half-to-fully kept images. The estimate's noise grows with the
    number of superpixels: check a ranking across seeds before trusting it (34 superpixels, 1000 samples:
    two seeds' rankings of a logit agreed at Spearman 0.3-0.5 on skimage's chelsea).

    Args: as :class:`LIME`, without ``kernel_width``; ``alpha`` defaults to 0.
    """

    name: ClassVar[str] = "kernel-shap"
    min_samples: ClassVar[int] = 2

    def coalitions(self, n_features: int, generator: torch.Generator) -> Tensor:
        anchors = torch.stack([torch.ones(n_features), torch.zeros(n_features)]).double()
        drawn = draw_coalitions(self.n_samples - 2, n_features, generator, shapley_size_law(n_features), paired=True)
        return torch.cat([anchors, drawn])

    def fit(self, z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return fit_efficient(z[2:], y[2:], none=y[1], full=y[0], alpha=self.alpha), y[1]
