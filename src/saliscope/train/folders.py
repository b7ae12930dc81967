"""Reading an ImageFolder-style directory (one sub-folder per class) into one tensor."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from ..core.errors import InputError
from ..io import IMAGE_SUFFIXES
from ..models.preprocess import Preprocess


def class_folders(data_dir: str | os.PathLike[str]) -> tuple[Path, list[tuple[str, list[Path]]]]:
    """``(root, [(class name, sorted image paths), ...])``, classes sorted by name as torchvision does."""
    root = Path(data_dir)
    if not root.is_dir():
        raise InputError(f"no folder at {root}", "pass a folder with one sub-folder of images per class")
    classes = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(
            f
            for f in sub.iterdir()
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
        )
        if files:
            classes.append((sub.name, files))
    if not classes:
        raise InputError(f"{root} has no sub-folders with images", "put each class's images in its own sub-folder")
    return root, classes


def load_folder(
    data_dir: str | os.PathLike[str], preprocess: Preprocess, labels: tuple[str, ...] | None = None
) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """Every image as model input ``(N, 3, size, size)``, its class index ``(N,)`` and the class names.

    With ``labels`` (a model's class names) the indices follow them, so a folder with fewer classes,
    or sorted differently, is still scored against the right outputs.
    """
    root, classes = class_folders(data_dir)
    names = tuple(name for name, _ in classes)
    order = labels if labels is not None else names
    unknown = [n for n in names if n not in order]
    if unknown:
        raise InputError(
            f"{root} has classes {unknown} the model does not know (it knows {list(order)})",
            "evaluate on a folder whose sub-folders are named like the model's labels",
        )
    paths = [p for _, files in classes for p in files]
    index = [order.index(name) for name, files in classes for _ in files]
    return preprocess(paths), torch.tensor(index, dtype=torch.long), tuple(order)
