"""How a photo becomes a model input, and how a model-space map goes back onto the photo.

``Preprocess`` is a plain frozen dataclass (not an ``nn.Module``): it is data about the model that the
explainers, the overlay code and the CLI all read, and it must never show up among the model's layers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from saliscope.core.errors import InputError

if TYPE_CHECKING:
    ImageLike = Image.Image | np.ndarray | str | os.PathLike[str]

Interpolation = Literal["bilinear", "bicubic", "nearest"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_RESAMPLE: dict[str, Image.Resampling] = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def as_interpolation(name: object, default: Interpolation = "bilinear") -> Interpolation:
    """A library's interpolation name as ours; modes we do not resample with (lanczos, ...) → ``default``."""
    text = str(name).lower()
    for known in get_args(Interpolation):
        if text == known:
            return known
    return default


def parse_channels(text: str, option: str) -> tuple[float, float, float]:
    """``"0.485,0.456,0.406"`` → three floats, for ``--mean`` / ``--std`` (``option`` names it in messages)."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    try:
        values = [float(p) for p in parts if p]
    except ValueError:
        values = []
        bad = True
    else:
        bad = len(values) != len(parts)
    if bad:
        raise InputError(
            f"--{option} {text!r} is not a list of numbers",
            f"pass three numbers R,G,B, e.g. --{option} {_EXAMPLE[option]}",
        )
    return checked_channels(values, option, flag=True)


_EXAMPLE = {"mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225"}


def checked_channels(values: Sequence[float], what: str, *, flag: bool = False) -> tuple[float, float, float]:
    """Three finite numbers (positive for ``std``), or :class:`InputError` naming the problem."""
    name = f"--{what}" if flag else what
    shown = ",".join(f"{v:g}" for v in values)
    example = _EXAMPLE.get(what, "0.5,0.5,0.5")
    if len(values) != 3:
        raise InputError(
            f"{name} needs three numbers (R,G,B), got {len(values)}: {shown}",
            f"pass one number per channel, e.g. {what}=({example})",
            f"pass one number per channel, e.g. --{what} {example}",
        )
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{name} must be finite numbers, got {shown}", f"pass e.g. --{what} {example}")
    if what == "std" and any(v <= 0 for v in values):
        zero = next(v for v in values if v <= 0)
        raise InputError(
            f"{name} has a value of {zero:g}: normalising divides by the standard deviation, which must be positive",
            f"pass three positive numbers, e.g. std=({example})",
            f"pass three positive numbers, e.g. --std {example}",
        )
    return (float(values[0]), float(values[1]), float(values[2]))


def _triple(values: Sequence[float], name: str) -> tuple[float, float, float]:
    vals = [float(v) for v in values]
    if len(vals) != 3:
        raise ValueError(f"Preprocess.{name} needs 3 values (R, G, B), got {len(vals)}")
    return vals[0], vals[1], vals[2]


@dataclass(frozen=True)
class Preprocess:
    """Resize the shorter side to ``resize``, centre-crop ``size``×``size``, scale to [0, 1], normalise.

    Model space is ``(pixel - mean) / std`` per channel, pixel in [0, 1]. With ``stretch`` both sides are
    resized to ``resize`` (the photo is squeezed into a square, as Hugging Face's ViT processors do) before
    the centre crop.
    """

    size: int = 224
    resize: int = 256
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    stretch: bool = False

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__ so lists/np floats become plain tuples of float.
        object.__setattr__(self, "mean", _triple(self.mean, "mean"))
        object.__setattr__(self, "std", _triple(self.std, "std"))
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "resize", int(self.resize))
        if self.size < 1:
            raise ValueError(f"Preprocess.size must be positive, got {self.size}")
        if self.resize < self.size:
            raise ValueError(f"Preprocess.resize ({self.resize}) must be at least size ({self.size})")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"Preprocess.std must be positive, got {self.std}")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"Preprocess.interpolation must be one of {sorted(_RESAMPLE)}, got {self.interpolation!r}")

    def with_overrides(
        self,
        *,
        input_size: int | None = None,
        resize: int | None = None,
        crop: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> Preprocess:
        """This preprocessing with the given parts replaced (what ``--input-size``, ``--resize``, ``--no-crop``,
        ``--mean`` and ``--std`` do on the command line).

        A new ``input_size`` keeps the resize-to-crop ratio (224 from 256 becomes 384 from 438) unless
        ``resize`` is given or ``crop`` is False, which resizes the shorter side to the input size itself.
        Raises :class:`InputError` for values that cannot work.
        """
        if input_size is not None and input_size < 1:
            raise InputError(f"the input size must be positive, got {input_size}", "pass e.g. input_size=224")
        if resize is not None and not crop:
            raise InputError(
                "a resize size and no crop contradict each other (no crop resizes to the input size)",
                "give one of resize= and crop=False",
                "give one of --resize and --no-crop",
            )
        size = self.size if input_size is None else int(input_size)
        if resize is None:
            resize = self.resize if input_size is None else max(size, math.floor(size * self.resize / self.size))
            resize = size if not crop else resize
        if resize < size:
            raise InputError(
                f"the resize size {resize} is smaller than the input size {size}: the crop would not fit",
                f"pass resize= of at least {size}, or crop=False",
                f"pass --resize of at least {size}, or --no-crop",
            )
        return replace(
            self,
            size=size,
            resize=int(resize),
            mean=self.mean if mean is None else checked_channels(mean, "mean"),
            std=self.std if std is None else checked_channels(std, "std"),
        )

    # ----- geometry ---------------------------------------------------------------------------------

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the shorter side is scaled to ``resize``.

        Rounds the longer side down, as torchvision's ``Resize(int)`` does, so that a Preprocess built
        from torchvision weights produces the same pixels as their own transform. With ``stretch``: a square.
        """
        if self.stretch:
            return self.resize, self.resize
        if width <= height:
            return self.resize, int(self.resize * height / width)
        return int(self.resize * width / height), self.resize

    def _crop_origin(self, resized_width: int, resized_height: int) -> tuple[int, int]:
        """Top-left corner of the centre crop in resized pixels (torchvision's rounding)."""
        return round((resized_width - self.size) / 2.0), round((resized_height - self.size) / 2.0)

    def crop_box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) in the ORIGINAL image's continuous pixel coordinates.

        Pixel ``i`` covers ``[i, i + 1)``. The model input's ``size``×``size`` grid covers exactly this
        box, so a ``(size, size)`` map resized to the box's extent and pasted at (left, top) lies over
        the photo where the model looked.
        """
        rw, rh = self.resized_size(width, height)
        left, top = self._crop_origin(rw, rh)
        sx, sy = width / rw, height / rh
        return (left * sx, top * sy, (left + self.size) * sx, (top + self.size) * sy)

    # ----- pixels -> tensor -------------------------------------------------------------------------

    def _one(self, image: ImageLike) -> Tensor:
        from saliscope.io import load_image  # io does not import models; the lazy import keeps it that way

        img = load_image(image)
        rw, rh = self.resized_size(*img.size)
        img = img.resize((rw, rh), resample=_RESAMPLE[self.interpolation])
        left, top = self._crop_origin(rw, rh)
        img = img.crop((left, top, left + self.size, top + self.size))
        arr = np.asarray(img, dtype=np.float32) / 255.0  # (H, W, 3) in [0, 1]
        return self.normalize(torch.from_numpy(arr).permute(2, 0, 1).contiguous())

    def __call__(self, image: ImageLike | Sequence[ImageLike]) -> Tensor:
        """Image(s) → float32 tensor ``(B, 3, size, size)`` in model space.

        ``image`` is a PIL image, a numpy array (H×W, H×W×1/3/4), a path, or a list of these (B = its
        length; B = 1 otherwise).
        """
        if isinstance(image, (list, tuple)):
            if not image:
                raise InputError("no images given", "pass at least one image")
            return torch.stack([self._one(i) for i in image])
        return self._one(image).unsqueeze(0)  # type: ignore[arg-type]

    # ----- model space <-> pixel space --------------------------------------------------------------

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """mean, std shaped (3, 1, 1) so they broadcast over (3, H, W) and (B, 3, H, W)."""
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(3, 1, 1)
        return mean, std

    def normalize(self, t: Tensor) -> Tensor:
        """Pixel space [0, 1] → model space; ``t`` is (3, H, W) or (B, 3, H, W)."""
        mean, std = self._stats(t)
        return (t - mean) / std

    def denormalize(self, t: Tensor) -> Tensor:
        """Model space → pixel space (unclamped); ``t`` is (3, H, W) or (B, 3, H, W)."""
        mean, std = self._stats(t)
        return t * std + mean

    def pixel_range(
        self, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Model-space values of pixel 0 (black) and pixel 1 (white), each shaped (3, 1, 1).

        ``low`` is the black baseline; ``torch.clamp(x, low, high)`` keeps ``x`` a real image.
        """
        zeros = torch.zeros(3, 1, 1, dtype=dtype, device=device)
        return self.normalize(zeros), self.normalize(zeros + 1.0)

    def to_pil(self, x: Tensor) -> Image.Image:
        """Model-space tensor (3, H, W) or (1, 3, H, W) → RGB PIL image (denormalised, clamped)."""
        if x.dim() == 4 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 3 or x.shape[0] != 3:
            raise InputError(
                f"to_pil needs one image shaped (3, H, W) or (1, 3, H, W), got {tuple(x.shape)}",
                "pass x[i] to convert the i-th image of a batch",
            )
        pixels = self.denormalize(x.detach().float().cpu()).clamp(0.0, 1.0)
        arr = (pixels.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        return Image.fromarray(arr)
