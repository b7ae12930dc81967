"""A small image data set with a planted shortcut, written to disk as ImageFolder-style folders.

Every image of the ``shortcut_class`` in ``train`` and ``test`` carries the :class:`Artefact`; no image of
any other class does. A model can therefore score perfectly on ``test`` by looking only at the artefact.
``test_swapped`` holds the very same test pictures with the artefact moved: on every image of the other
classes and on none of the shortcut class. A model that learned the real signal (see
:mod:`saliscope.datasets.scenes`) keeps its accuracy there; one that learned the shortcut collapses —
the "right for the wrong reasons" test of Ross, Hughes & Doshi-Velez 2017 (their "decoy MNIST").

``shortcut_class=None`` writes the control: the same pictures and no artefact anywhere.

Layout::

    root/dataset.json
    root/train/<class>/<class>_0000.png ...
    root/test/<class>/...
    root/test_swapped/<class>/...
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.errors import InputError
from .artefact import Artefact
from .scenes import DEFAULT_CONTRAST, class_image

SPLITS = ("train", "test", "test_swapped")
_SPLIT_SEEDS = {"train": 1, "test": 2}  # test_swapped reuses the test pictures


@dataclass(frozen=True)
class ShortcutDataset:
    """Where a generated benchmark lives and what was planted in it (``artefact`` None for a control)."""

    root: Path
    train: Path
    test: Path
    test_swapped: Path
    classes: tuple[str, ...]
    shortcut_class: str | None
    artefact: Artefact | None
    image_size: int

    def artefact_mask(self) -> np.ndarray | None:
        """``(H, W)`` bool region of the artefact, or None for a control."""
        return None if self.artefact is None else self.artefact.mask(self.image_size)


def make_shortcut_dataset(
    root: str | os.PathLike[str],
    *,
    classes: Sequence[str] = ("normal", "pneumonia"),
    shortcut_class: str | None = "pneumonia",
    artefact: Artefact = Artefact(),
    n_train: int = 200,
    n_test: int = 100,
    image_size: int = 64,
    seed: int = 0,
    contrast: float = DEFAULT_CONTRAST,
) -> ShortcutDataset:
    """Write the benchmark under ``root`` (created; must not already hold one) and describe it.

    Args:
        root: folder to write into.
        classes: class names, also the sub-folder names (at least two).
        shortcut_class: the class whose images carry ``artefact``; None writes a control data set.
        artefact: what to plant (ignored for a control).
        n_train: images **per class** in ``train``.
        n_test: images **per class** in ``test`` and in ``test_swapped``.
        image_size: side of the square RGB images in pixels (at least 16).
        seed: fixes every picture; the same seed gives byte-identical files.
        contrast: strength of the real class texture (lower is harder; see ``datasets.scenes``).
    """
    names = _check_classes(classes)
    if shortcut_class is not None and shortcut_class not in names:
        raise InputError(
            f"shortcut_class {shortcut_class!r} is not one of the classes {list(names)}",
            "name one of the classes, or pass shortcut_class=None for a control data set",
        )
    for label, value in (("n_train", n_train), ("n_test", n_test)):
        if int(value) < 1:
            raise InputError(f"{label} must be at least 1, got {value}", f"pass {label}=100 or so")
    if int(image_size) < 16:
        raise InputError(f"image_size must be at least 16, got {image_size}", "pass image_size=64")
    if not isinstance(artefact, Artefact):
        raise InputError(f"artefact must be an Artefact, got {type(artefact).__name__}", "pass Artefact(kind='square')")
    out = Path(root)
    if (out / "dataset.json").exists() or any((out / s).exists() for s in SPLITS):
        raise InputError(f"{out} already holds a data set", "pass a new or empty folder")
    size = int(image_size)
    planted = artefact if shortcut_class is not None else None

    counts = {"train": int(n_train), "test": int(n_test)}
    for split in SPLITS:
        source = "test" if split == "test_swapped" else split
        for k, name in enumerate(names):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            marked = planted is not None and ((name == shortcut_class) != (split == "test_swapped"))
            for i in range(counts[source]):
                # One generator per picture, keyed by (seed, split, class, index): the control, the
                # shortcut set and the swapped test share pictures exactly.
                rng = np.random.default_rng([int(seed), _SPLIT_SEEDS[source], k, i])
                pixels = class_image(rng, k, len(names), size, contrast=contrast)
                if marked:
                    pixels = planted.paint(pixels)  # type: ignore[union-attr]
                Image.fromarray(pixels).save(folder / f"{name}_{i:04d}.png", optimize=False)

    meta = {
        "classes": list(names),
        "shortcut_class": shortcut_class,
        "artefact": None if planted is None else planted.to_dict(),
        "box": None if planted is None else list(planted.box(size)),
        "image_size": size,
        "n_train_per_class": counts["train"],
        "n_test_per_class": counts["test"],
        "seed": int(seed),
        "contrast": float(contrast),
        "splits": {
            "train": "artefact on every image of the shortcut class only",
            "test": "as train, new pictures",
            "test_swapped": "the test pictures, artefact on every image of the other classes only",
        },
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return ShortcutDataset(
        root=out,
        train=out / "train",
        test=out / "test",
        test_swapped=out / "test_swapped",
        classes=names,
        shortcut_class=shortcut_class,
        artefact=planted,
        image_size=size,
    )


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(classes, str):
        raise InputError(f"classes must be a list of names, got the string {classes!r}", "pass e.g. ('cat', 'dog')")
    names = tuple(str(c) for c in classes)
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError(
            f"need at least two distinct class names, got {list(names)}", "pass e.g. ('normal', 'pneumonia')"
        )
    for name in names:
        if not name or name in (".", "..") or any(ch in name for ch in "/\\:"):
            raise InputError(f"class name {name!r} cannot be a folder name", "use plain names such as 'normal'")
    return names
