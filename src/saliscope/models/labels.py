"""Class names: ImageNet's 1000, a user's list or file, or ``class 0`` … ``class N-1``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Union

from saliscope.core.errors import ModelLoadError

LabelsArg = Union[Sequence[str], str, "os.PathLike[str]", None]

# ImageNet has two first names used twice ("crane" the bird and the machine, "maillot" twice).
# torchvision renames one of each; we do the same so that every label is unique (a target can be
# named by label) and ImageNet models show the same names whichever library built them.
_UNIQUE_NAMES = {134: "crane bird", 639: "maillot tank suit"}


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, short form (``281 → "tabby"``, ``967 → "espresso"``).

    The first name of timm's offline WordNet description of each class; equal to torchvision's
    ``weights.meta["categories"]``.
    """
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    names = [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]
    for index, name in _UNIQUE_NAMES.items():
        names[index] = name
    return tuple(names)


def generic_labels(num_classes: int) -> tuple[str, ...]:
    """``("class 0", …, "class N-1")`` for models whose classes we do not know."""
    return tuple(f"class {i}" for i in range(num_classes))


def default_labels(num_classes: int | None) -> tuple[str, ...]:
    """ImageNet names for 1000 outputs, generic names otherwise, ``()`` when the count is unknown."""
    if num_classes is None:
        return ()
    return imagenet_labels() if num_classes == 1000 else generic_labels(num_classes)


def read_labels_file(path: Path) -> tuple[str, ...]:
    """One label per line; surrounding whitespace and trailing blank lines are dropped."""
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not found"
        raise ModelLoadError(f"labels file {what}: {path}", "pass a text file with one class name per line")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(
            f"cannot read labels file {path} ({type(exc).__name__})",
            "pass a UTF-8 text file with one class name per line",
        ) from exc
    labels = [line.strip() for line in lines]
    while labels and not labels[-1]:
        labels.pop()
    return tuple(labels)


def resolve_labels(labels: LabelsArg, num_classes: int | None) -> tuple[str, ...]:
    """Turn ``labels=`` into a tuple of ``num_classes`` names (a file path, a sequence, or None)."""
    if labels is None:
        return default_labels(num_classes)
    if isinstance(labels, (str, os.PathLike)):
        # A bare string is a path: a string of single-character labels is never what was meant.
        path = Path(labels)
        with contextlib.suppress(RuntimeError):  # "~user" of an unknown user: reported as not found
            path = path.expanduser()
        names = read_labels_file(path)
        source = f"labels file {labels}"
    else:
        names = tuple(str(label) for label in labels)
        source = "labels="
    if num_classes is not None and len(names) != num_classes:
        raise ModelLoadError(
            f"{source} has {len(names)} labels but the model has {num_classes} outputs",
            f"give exactly {num_classes} labels, one per output, in output order",
        )
    return names
