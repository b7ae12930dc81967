"""Atomic file writes: every file saliscope writes is either complete or absent.

Each writer fills a hidden temporary file in the destination folder and moves it into place with
``os.replace`` (atomic on POSIX and Windows within one file system). An interrupted or failing write
removes its temporary file and leaves any earlier version of the destination untouched.
"""

from __future__ import annotations

import io
import json
import math
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

PathLike = str | os.PathLike[str]


@contextmanager
def atomic_write(path: PathLike) -> Iterator[IO[bytes]]:
    """Open a binary temporary file next to ``path``; on a clean exit it replaces ``path``.

    The destination folder is created if needed. The temporary file is created with mode 0o666 minus
    the process umask, like any ordinary file, so the result has ordinary permissions.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# zlib's level for every PNG written: on a demo overlay and panel, level 3 encodes 2.7× faster than Pillow's
# default 6 for 12% more bytes (bench/bench_tricks.py, section 8). Still lossless.
PNG_COMPRESS_LEVEL = 3


def png_bytes(
    figure_or_image: Figure | Image.Image, *, dpi: float | None = None, level: int = PNG_COMPRESS_LEVEL
) -> bytes:
    """A matplotlib Figure (at ``dpi``, default its own) or a PIL image encoded as PNG at zlib ``level``."""
    buffer = io.BytesIO()
    if isinstance(figure_or_image, Figure):
        figure_or_image.savefig(
            buffer, format="png", dpi=dpi or figure_or_image.dpi, pil_kwargs={"compress_level": level}
        )
    elif isinstance(figure_or_image, Image.Image):
        figure_or_image.save(buffer, format="PNG", compress_level=level)
    else:
        raise TypeError(f"a PNG is made of a matplotlib Figure or a PIL image, got {type(figure_or_image).__name__}")
    return buffer.getvalue()


def save_png(figure_or_image: Figure | Image.Image, path: PathLike, *, dpi: float | None = None) -> Path:
    """Write a matplotlib Figure or a PIL image as PNG. Returns the path written."""
    # Rendered into memory first: a failure while drawing then never opens the destination at all.
    return _write_bytes(png_bytes(figure_or_image, dpi=dpi), path)


def save_npy(array: np.ndarray | torch.Tensor, path: PathLike) -> Path:
    """Write an array (or tensor, moved to the CPU) in NumPy's .npy format. Returns the path written."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return _write_bytes(buffer.getvalue(), path)


def save_json(obj: Any, path: PathLike) -> Path:
    """Write ``obj`` as indented UTF-8 JSON. Tensors, numpy values and paths are converted;
    NaN / Inf become ``null`` (JSON has no such numbers)."""
    text = json.dumps(_plain(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return _write_bytes((text + "\n").encode("utf-8"), path)


def _write_bytes(data: bytes, path: PathLike) -> Path:
    with atomic_write(path) as handle:
        handle.write(data)
    return Path(path)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _plain(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if hasattr(obj, "items"):  # Mapping proxies (Explanation.params)
        return {str(k): _plain(v) for k, v in obj.items()}
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON")
