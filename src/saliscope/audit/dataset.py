"""An ImageFolder-style data set: one sub-folder per class, images (any format Pillow reads) inside.

Like torchvision's ``ImageFolder``, class folders are searched recursively and classes are sorted by
name. Hidden files and folders (``.DS_Store``, ``._photo.jpg``) are skipped; other files that do not have
an image suffix are listed as ignored. Files that have one but cannot be read are not errors of the
audit: :func:`load_batch` reports them, with the reason, and the audit goes on without them.

A model's preprocessing may crop: ImageNet's resize-256 / crop-224 never shows the model the outer 6 %
of each side, which is where markers sit. :func:`visible_share` measures it per image, and
:func:`crop_warnings` / :func:`seen_warnings` say so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

import torch
from torch import Tensor

from ..core.errors import InputError, SaliscopeError
from ..io.images import IMAGE_SUFFIXES, load_image
from ..models.preprocess import Preprocess


@dataclass(frozen=True)
class Item:
    """One image file: where it is, its key (path relative to the data folder, with ``/``), its class."""

    path: Path
    key: str
    label: str


@dataclass(frozen=True)
class Folder:
    """What :func:`scan_image_folder` found: classes in order, images, and files it ignored (with why)."""

    root: Path
    classes: tuple[str, ...]
    items: tuple[Item, ...]
    ignored: tuple[tuple[str, str], ...]


def scan_image_folder(root: str | os.PathLike[str]) -> Folder:
    """Walk ``root``: each non-hidden sub-folder is a class, every image below it one of its items.

    Items come class by class, in sorted path order. Raises :class:`InputError` when ``root`` is not a
    folder, has no class sub-folders, or none of them holds an image.
    """
    base = Path(root).expanduser()
    if not base.exists():
        raise InputError(f"data folder not found: {base}", "check the path")
    if not base.is_dir():
        raise InputError(
            f"{base} is a file, not a data folder",
            "pass a folder with one sub-folder of images per class (ImageFolder layout)",
        )
    try:
        entries = sorted(base.iterdir())
    except OSError as exc:
        raise InputError(
            f"cannot list the data folder {base} ({exc.strerror or exc})", "check the folder's permissions"
        ) from exc
    folders = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    loose = [e for e in entries if e.is_file() and e.suffix.lower() in IMAGE_SUFFIXES and not e.name.startswith(".")]
    if not folders:
        found = f"{len(loose)} images but no class sub-folders" if loose else "no class sub-folders"
        raise InputError(
            f"{base} holds {found}", "put each class's images in a sub-folder named after it (DATA_DIR/<class>/<image>)"
        )
    classes: list[str] = []
    items: list[Item] = []
    ignored: list[tuple[str, str]] = []
    for folder in folders:
        found_items = _walk(base, folder, ignored)
        if found_items:
            classes.append(folder.name)
            items.extend(found_items)
        else:
            ignored.append((folder.relative_to(base).as_posix() + "/", "class folder without images"))
    for path in loose:
        ignored.append((path.name, "image outside any class folder"))
    if not items:
        raise InputError(
            f"no images found in the class folders of {base}", "put images (.jpg, .png, ...) in DATA_DIR/<class>/"
        )
    return Folder(base, tuple(classes), tuple(items), tuple(ignored))


def _walk(base: Path, folder: Path, ignored: list[tuple[str, str]]) -> list[Item]:
    items = []
    for directory, subdirs, files in os.walk(folder, onerror=None, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(directory) / name
            key = path.relative_to(base).as_posix()
            if path.suffix.lower() in IMAGE_SUFFIXES:
                items.append(Item(path, key, folder.name))
            else:
                ignored.append((key, f"not an image file (suffix {path.suffix or 'none'})"))
    return items


def interleave(items: Sequence[Item], classes: Sequence[str]) -> list[Item]:
    """Round-robin over classes (first of each class, then second, ...), so that any prefix — a ``--limit``,
    or what an interrupted audit has done — covers every class in proportion."""
    by_class: dict[str, list[Item]] = {c: [] for c in classes}
    for item in items:
        by_class[item.label].append(item)
    return [item for row in zip_longest(*by_class.values()) for item in row if item is not None]


@dataclass(frozen=True)
class LoadedBatch:
    """Images of a batch that could be read, preprocessed; and the ones that could not, with the reason."""

    images: Tensor | None  # (b, 3, size, size) model space, None when none could be read
    items: tuple[Item, ...]
    sizes: tuple[tuple[int, int], ...]  # each image's (width, height) before preprocessing
    seen: tuple[float, ...]  # share of each image's area inside the model's crop
    failed: tuple[tuple[Item, str], ...]


def load_batch(items: Sequence[Item], preprocess: Preprocess) -> LoadedBatch:
    """Read and preprocess ``items``; a file that cannot be used becomes a failure, never an exception."""
    tensors, ok, sizes, seen, failed = [], [], [], [], []
    for item in items:
        try:
            image = load_image(item.path)
            tensors.append(preprocess(image)[0])
        except SaliscopeError as exc:
            failed.append((item, " ".join(str(exc).split())))
            continue
        except Exception as exc:
            failed.append((item, f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"))
            continue
        ok.append(item)
        sizes.append(image.size)
        seen.append(visible_share(preprocess, *image.size))
    return LoadedBatch(torch.stack(tensors) if tensors else None, tuple(ok), tuple(sizes), tuple(seen), tuple(failed))


def visible_share(preprocess: Preprocess, width: int, height: int) -> float:
    """The share of a ``width × height`` image's area that survives the centre crop (1: all of it)."""
    left, top, right, bottom = preprocess.crop_box(width, height)
    return (
        max(0.0, min(right, width) - max(left, 0.0)) * max(0.0, min(bottom, height) - max(top, 0.0)) / (width * height)
    )


def crop_warnings(pre: Preprocess) -> list[str]:
    """A warning when the preprocessing crops: corners and borders are exactly what an audit looks at."""
    if pre.resize <= pre.size:
        return []
    cut = (pre.resize - pre.size) / 2 / pre.resize
    return [
        f"the model's preprocessing resizes to {pre.resize} and centre-crops {pre.size}×{pre.size}: the outer"
        f" {cut:.0%} of each side of a square image (more of a long side) is never seen, so a shortcut"
        f" there cannot be found — pass --no-crop to resize to {pre.size} without cropping square images (in"
        f" Python: preprocess=dataclasses.replace(model.preprocess, resize={pre.size}))"
    ]


def seen_warnings(seen: dict[str, float]) -> list[str]:
    """A warning when images lost area to the crop; ``seen`` holds ``images``, ``cropped`` and the ``mean``
    visible share (see :func:`visible_share`)."""
    if seen["images"] == 0 or seen["mean"] >= 0.999:
        return []
    return [
        f"{seen['cropped']} of {seen['images']} images were cropped by the preprocessing to fit the model's"
        f" square input; on average {1 - seen['mean']:.0%} of an image's area was never seen"
    ]
