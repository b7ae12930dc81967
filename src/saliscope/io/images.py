"""Read one image from a path, a PIL image or a numpy array, always as an 8-bit RGB PIL image.

Every way a user's file can be unusable ends in one :class:`ImageError` with a problem and a fix;
every way it can be merely unusual (grey, 16-bit, transparent, CMYK, float, rotated by EXIF) is
converted. Pillow's global switches (``LOAD_TRUNCATED_IMAGES``, ``MAX_IMAGE_PIXELS``) are read,
never written: they belong to the caller's process.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from saliscope.core.errors import ImageError

ImageSource = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]

MIN_SIDE = 8
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_WHITE = 255.0


def load_image(source: ImageSource) -> Image.Image:
    """Return ``source`` as a mode-"RGB" PIL image (H×W×3, uint8), EXIF orientation applied.

    ``source`` is a path, a PIL image, or a numpy array shaped (H, W), (H, W, 1), (H, W, 3) or
    (H, W, 4) of dtype uint8, uint16, bool, or float with values in [0, 1]. Transparent pixels are
    composited over white. Raises :class:`ImageError` for anything that cannot be used.
    """
    if isinstance(source, Image.Image):
        image = _to_rgb(_upright(source))
    elif isinstance(source, np.ndarray):
        image = _from_array(source, what="array")
    elif isinstance(source, (str, os.PathLike)):
        image = _open(Path(source))
        _check_size(image, what=str(source))
        return image
    else:
        raise ImageError(
            f"cannot read an image from a {type(source).__name__}",
            "pass a file path, a PIL image or a numpy array (H, W, 3)",
        )
    _check_size(image)
    return image


def list_images(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand directories into their image files (by suffix, sorted, not recursive); keep other paths.

    A path that does not exist, or a file with any suffix, is kept as given so that
    :func:`load_image` can say what is wrong with it. A folder that cannot be listed (no
    permission) raises :class:`ImageError`.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if _is_dir(path):
            try:
                entries = list(path.iterdir())
            except PermissionError as exc:
                raise ImageError(
                    f"no permission to list the folder {path}",
                    "check the folder's permissions (it needs read and execute)",
                ) from exc
            except OSError as exc:
                raise ImageError(f"cannot list the folder {path} ({_first_line(exc)})", "check the path") from exc
            # Dotfiles are skipped: macOS "._photo.jpg" resource forks are not images.
            out.extend(
                sorted(
                    p
                    for p in entries
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                )
            )
        else:
            out.append(path)
    return out


# ----- files ----------------------------------------------------------------------------------------


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, False where the path cannot even be looked at (load_image then says why)."""
    try:
        return path.is_dir()
    except OSError:  # EACCES from a folder on the way that cannot be searched
        return False


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__


def _check_file(path: Path) -> None:
    try:
        if not path.exists():
            if path.is_symlink():
                raise _bad_link(path)
            raise ImageError(f"image file not found: {path}", "check the path and its spelling")
        if path.is_dir():
            raise ImageError(
                f"{path} is a directory, not an image file",
                "pass an image file, or expand the folder with saliscope.io.list_images()",
            )
        empty = path.stat().st_size == 0
    except PermissionError as exc:  # a folder on the way that cannot be searched
        raise ImageError(
            f"no permission to reach {path} (a folder on its path cannot be searched)",
            "check the permissions of the folders on the path",
        ) from exc
    except OSError as exc:  # a name too long, a broken mount: the path itself is unusable
        raise ImageError(f"cannot access {path} ({_first_line(exc)})", "check the path") from exc
    if empty:
        raise ImageError(f"{path} is empty (0 bytes)", "re-download or re-export the image")


def _bad_link(path: Path) -> ImageError:
    """The error for a symbolic link that leads nowhere: a loop, or a target that does not exist."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return ImageError(
                f"{path} is a symbolic link that loops back on itself",
                "point the link at an image file, or pass the image file itself",
            )
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return ImageError(
        f"{path} is a broken symbolic link (its target {target} does not exist)",
        "point the link at an existing image file, or pass the image file itself",
    )


def _open(path: Path) -> Image.Image:
    with contextlib.suppress(RuntimeError):  # "~user" of an unknown user: reported as missing below
        path = path.expanduser()
    _check_file(path)
    limit = Image.MAX_IMAGE_PIXELS
    bomb_fix = "downscale the image first, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
    try:
        # A local filter turns Pillow's bomb *warning* (between 1× and 2× the limit) into an error
        # without touching the process-wide warning filters or the limit itself.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                opened.load()
                image = _upright(opened)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(found.group(1)):,} pixels" if found else "more pixels"
        raise ImageError(f"{path} has {count}, more than Pillow's safety limit of {limit:,}", bomb_fix) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{path} is not an image file Pillow can read",
            "pass a JPEG, PNG, BMP, GIF, TIFF or WebP image",
        ) from exc
    except PermissionError as exc:
        raise ImageError(f"no permission to read {path}", "check the file's permissions") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated/damaged data surfaces as OSError ("image file is truncated"), SyntaxError
        # (some decoders) or ValueError/EOFError; we deliberately do not set LOAD_TRUNCATED_IMAGES.
        raise ImageError(
            f"{path} is truncated or damaged ({_first_line(exc)})",
            "re-download or re-export the image",
        ) from exc
    return _to_rgb(image, what=str(path))


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag, if any (phones store portraits as rotated landscapes)."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block should not make a readable photo unreadable
        return image.copy()  # a copy: the caller may close the original file-backed image


def _check_size(image: Image.Image, what: str = "image") -> None:
    width, height = image.size
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(
            f"{what} is {width}×{height} pixels; need at least {MIN_SIDE}×{MIN_SIDE}",
            "use a larger image",
        )


# ----- modes ----------------------------------------------------------------------------------------


def _to_rgb(image: Image.Image, what: str = "image") -> Image.Image:
    """Any Pillow mode → "RGB" (8 bit), alpha composited over white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        # Wide integer / float modes: Pillow's own convert() clips to 0..255 instead of scaling.
        return _from_array(np.asarray(image), what=what, pil_mode=mode)
    try:
        if mode == "La":  # premultiplied grey + alpha: Pillow converts it only to LA
            image = image.convert("LA")
        if image.mode in ("RGBA", "LA", "PA", "RGBa") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        # 1, L, P (opaque), CMYK, YCbCr, LAB, HSV, RGBX: Pillow's conversion is exact enough.
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageError(
            f"{what} has pixel mode {mode!r}, which cannot be converted to RGB ({exc})",
            "save it as an 8-bit RGB or greyscale PNG/JPEG first",
        ) from exc


# ----- arrays ---------------------------------------------------------------------------------------


def _from_array(arr: np.ndarray, *, what: str, pil_mode: str | None = None) -> Image.Image:
    """(H, W[, C]) array → RGB image. Values are scaled by the dtype's bit depth, never clipped."""
    if arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4) and arr.shape[0] in (1, 3, 4):
        raise ImageError(
            f"{what} has shape {arr.shape}, which looks channels-first",
            "pass it channels-last: arr.transpose(1, 2, 0)",
        )
    if arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4):
        pass
    elif arr.ndim != 2:
        raise ImageError(
            f"{what} has shape {arr.shape}; an image array must be (H, W), (H, W, 3) or (H, W, 4)",
            "pass one image, channels last",
        )
    if arr.size == 0:
        raise ImageError(f"{what} is empty (shape {arr.shape})", "pass a non-empty image")
    unit = _to_unit(arr, what=what, pil_mode=pil_mode)  # float32 in [0, 1]
    if unit.ndim == 2:
        unit = unit[:, :, None]
    channels = unit.shape[2]
    if channels in (2, 4):  # the last channel is alpha: composite over white
        alpha = unit[:, :, -1:]
        colour = unit[:, :, :-1]
        unit = colour * alpha + (1.0 - alpha)
    if unit.shape[2] == 1:
        unit = np.repeat(unit, 3, axis=2)
    return Image.fromarray(np.round(unit * _WHITE).astype(np.uint8))


def _to_unit(arr: np.ndarray, *, what: str, pil_mode: str | None) -> np.ndarray:
    """Scale to float32 [0, 1] by bit depth (uint8 /255, uint16 /65535, bool 0/1, float as is)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype.kind == "f":
        return _float_to_unit(arr, what=what, from_file=pil_mode == "F")
    if arr.dtype.kind in "iu":
        low, high = int(arr.min()), int(arr.max())
        if pil_mode is not None and pil_mode.startswith("I"):
            # Pillow's 32-bit "I" mode comes from 16-bit PNG/TIFF files: scale by 16 bits when the
            # values fit, else stretch the actual range (a 32-bit scan has no better convention).
            if low >= 0 and high <= 65535:
                return arr.astype(np.float32) / 65535.0
            return _stretch(arr)
        if low >= 0 and high <= 255:  # e.g. np.array(img).astype(int): plain 8-bit data
            return arr.astype(np.float32) / 255.0
        raise ImageError(
            f"{what} is {arr.dtype} with values in [{low}, {high}]; its bit depth is ambiguous",
            "pass uint8 (0..255), uint16 (0..65535) or float values in [0, 1]",
        )
    raise ImageError(
        f"{what} has dtype {arr.dtype}, which is not an image type",
        "pass uint8, uint16, bool or float values in [0, 1]",
    )


def _float_to_unit(arr: np.ndarray, *, what: str, from_file: bool) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise ImageError(f"{what} contains NaN or Inf values", "replace them, e.g. np.nan_to_num(arr)")
    low, high = float(arr.min()), float(arr.max())
    tol = 1e-3  # float arithmetic leaves values a hair outside [0, 1]
    if low >= -tol and high <= 1 + tol:
        return np.clip(arr.astype(np.float32), 0.0, 1.0)
    if from_file:
        # A float TIFF has no agreed range: 0..255 data is kept, anything else is stretched.
        if low >= 0 and high <= 255:
            return arr.astype(np.float32) / 255.0
        return _stretch(arr)
    raise ImageError(
        f"{what} is float with values in [{low:.4g}, {high:.4g}]; float images must be in [0, 1]",
        "divide by 255 (for 0..255 data) or rescale to [0, 1]",
    )


def _stretch(arr: np.ndarray) -> np.ndarray:
    low, high = float(arr.min()), float(arr.max())
    if high == low:
        return np.zeros(arr.shape, np.float32)
    return ((arr.astype(np.float64) - low) / (high - low)).astype(np.float32)
