"""SmoothGrad (Smilkov et al. 2017), SmoothGrad² and VarGrad (Adebayo et al. 2018) over any explainer."""

from __future__ import annotations

import secrets
from itertools import groupby
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..core.chunking import image_rows
from ..core.cost import CostMeter
from ..core.errors import MethodError
from ..core.targets import BoundTarget
from ..methods.base import Attribution, Explainer
from ..methods.gradient import gradient_net

Mode = Literal["mean", "squared", "variance"]
_NAMES: dict[str, str] = {"mean": "smoothgrad", "squared": "smoothgrad-squared", "variance": "vargrad"}


class Noise:
    """Standard normal noise for the noise samples of one run seeded ``seed``, drawn on the input's device.

    Samples come in blocks of :attr:`BLOCK`, each block from its own generator seeded by ``(seed, block)``,
    so the draws do not depend on how the run is chunked or batched, and a 50-sample run is four
    generator calls rather than fifty. The last block drawn is kept, since consecutive chunks mostly
    read the same one. A seed gives identical noise on one device type; CPU and CUDA streams differ.
    """

    BLOCK = 16

    def __init__(self, seed: int, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> None:
        self.seed, self.shape, self.device, self.dtype = seed, tuple(shape), device, dtype
        self._block = -1
        self._draws: Tensor | None = None

    def block(self, j: int) -> Tensor:
        if j != self._block or self._draws is None:
            generator = torch.Generator(device=self.device).manual_seed((self.seed * 1_000_003 + j) % (2**63))
            # Drawn in float32 whatever the compute precision, so float32 and float64 runs see the same noise.
            draws = torch.randn((self.BLOCK, *self.shape), generator=generator, device=self.device)
            self._draws = draws.to(self.dtype)
            self._block = j
        return self._draws

    def __call__(self, indices: list[int]) -> Tensor:
        """Noise for the given sample indices, ``(len(indices), *shape)``."""
        out = torch.empty((len(indices), *self.shape), device=self.device, dtype=self.dtype)
        pos = 0
        for j, run in groupby(indices, key=lambda i: i // self.BLOCK):
            offsets = [i % self.BLOCK for i in run]
            first, n = offsets[0], len(offsets)
            draws = self.block(j)
            if offsets == list(range(first, first + n)):
                out[pos : pos + n] = draws[first : first + n]
            else:
                out[pos : pos + n] = draws[offsets]
            pos += n
        return out


class SmoothGrad(Explainer):
    """Average an explainer's maps over noisy copies of the input.

    ``mode="mean"`` is SmoothGrad (Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017),
    ``"squared"`` SmoothGrad² (the mean of squared maps) and ``"variance"`` VarGrad (Adebayo et al.,
    "Local Explanation Methods for Deep Neural Networks Lack Sensitivity to Parameter Values", 2018).

    Wraps any :class:`Explainer` without knowing its arguments: the noisy copies of all images are run
    through the inner method in chunks sized from its measured memory cost. The target is resolved once
    on the clean input, so every noisy copy explains the same class.

    Args:
        inner: the explainer to smooth (``Gradient(model)``, ``IntegratedGradients(model)``, ...).
        n_samples: noisy copies per image.
        sigma: noise standard deviation as a fraction of each image's value range (max - min);
            the paper finds 10–20 % works best.
        mode: ``"mean"``, ``"squared"`` or ``"variance"``.
        seed: seeds the noise; None draws a seed, which is recorded in the explanation's params. Every
            image of a batch sees the same noise draws, so a batch is explained as each image alone.
    """

    def __init__(
        self,
        inner: Explainer,
        *,
        n_samples: int = 50,
        sigma: float = 0.15,
        mode: Mode = "mean",
        seed: int | None = None,
        chunk_size: int | None = None,
    ) -> None:
        if not isinstance(inner, Explainer):
            raise MethodError(f"SmoothGrad wraps an explainer, got {type(inner).__name__}", "pass e.g. Gradient(model)")
        if mode not in _NAMES:
            raise MethodError(f"unknown SmoothGrad mode {mode!r}", "use 'mean', 'squared' or 'variance'")
        if n_samples < 1:
            raise MethodError(f"n_samples must be >= 1, got {n_samples}", "use e.g. n_samples=50")
        if sigma < 0:
            raise MethodError(f"sigma must be >= 0, got {sigma}", "use e.g. sigma=0.15")
        super().__init__(inner.model, chunk_size=chunk_size, precision=inner.precision)
        self.inner = inner
        self.n_samples = n_samples
        self.sigma = float(sigma)
        self.mode: Mode = mode
        self.seed = seed
        self.name = _NAMES[mode]  # type: ignore[misc]

    @property
    def rows_per_sample(self) -> int:
        return self.n_samples * self.inner.rows_per_sample

    def compute_model(self) -> nn.Module:
        return self.inner.compute_model()

    def params(self) -> dict[str, Any]:
        inner = {f"inner.{k}": v for k, v in self.inner.params().items()}
        return {
            "inner": self.inner.name,
            "n_samples": self.n_samples,
            "sigma": self.sigma,
            "mode": self.mode,
            "seed": self.seed,
            **inner,
        }

    def _attribute(self, net: nn.Module, x: Tensor, target: BoundTarget, meter: CostMeter) -> Attribution:
        seed = self.seed if self.seed is not None else secrets.randbits(62)
        n, m = int(x.shape[0]), self.n_samples
        stds = self.sigma * (x.flatten(1).amax(1) - x.flatten(1).amin(1))  # (B,)
        # Accumulate in float64: VarGrad subtracts two close numbers.
        total: Tensor | None = None
        total_sq: Tensor | None = None
        noise = Noise(seed, x.shape[1:], x.device, x.dtype)
        # Whether the folded copy pays is decided once, by one image's m noisy copies (the inner sees one chunk
        # at a time), so a batch gives what each image gives alone.
        inner_net = (gradient_net(net, x, m, meter) if self.inner.on_folded_copy else None) or net
        done = 0
        while done < n * m:
            per_chunk = self.chunker.chunk_size or self.inner.samples_per_chunk(x) or 1
            rows = range(done, min(n * m, done + per_chunk))
            sample_cpu = torch.tensor([r // m for r in rows])
            sample = sample_cpu.to(x.device, non_blocking=True)
            spread = image_rows(stds, sample_cpu).view(-1, 1, 1, 1)
            noisy = image_rows(x, sample_cpu) + spread * noise([r % m for r in rows])
            maps = self.inner._attribute(inner_net, noisy, target.take(sample_cpu), meter).attributions.double()
            if total is None:
                total = torch.zeros((n, *maps.shape[1:]), dtype=torch.float64, device=x.device)
                total_sq = torch.zeros_like(total)
            assert total_sq is not None
            total.index_add_(0, sample, maps)
            if self.mode != "mean":
                total_sq.index_add_(0, sample, maps * maps)
            done += len(rows)
        assert total is not None and total_sq is not None
        mean = total / m
        if self.mode == "mean":
            out = mean
        elif self.mode == "squared":
            out = total_sq / m
        else:
            out = (total_sq / m - mean * mean).clamp(min=0)
        return Attribution(out.to(x.dtype), params={"seed": seed})
