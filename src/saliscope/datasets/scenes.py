"""The real class signal of the shortcut benchmark: a faint oriented texture in noise.

Each image is a grey "film": a random brightness, smooth blotches and pixel noise. Somewhere near the
centre sits a Gabor patch (a striped blob) whose orientation is the class: for ``K`` classes the
orientations are ``k · 180° / K`` (0° and 90° for two), jittered by up to ±``jitter`` degrees, with a
random wavelength, phase and place. A small CNN can learn this — it is what a model trained without the
shortcut ends up using — but it is faint and noisy, so it is much harder than a planted artefact, which
is what makes plain training take the shortcut.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

#: Peak contrast of the class texture, in [0, 1] intensity units; noise has std ~0.09 around it.
DEFAULT_CONTRAST = 0.12


def class_image(
    rng: np.random.Generator,
    class_index: int,
    n_classes: int,
    size: int,
    *,
    contrast: float = DEFAULT_CONTRAST,
    jitter: float = 15.0,
) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 grey image carrying class ``class_index``'s texture.

    All randomness comes from ``rng``, so one generator seeded per image gives the same picture whatever
    else is drawn (the control and the shortcut data sets share their images this way).
    """
    n = size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    level = rng.uniform(0.35, 0.6)
    blotches = gaussian_filter(rng.standard_normal((n, n)), sigma=n / 16, mode="wrap")
    blotches *= 0.08 / max(blotches.std(), 1e-8)
    grain = rng.standard_normal((n, n)) * 0.04

    theta = np.deg2rad(180.0 * class_index / n_classes + rng.uniform(-jitter, jitter))
    wavelength = rng.uniform(0.09, 0.14) * n
    cx, cy = rng.uniform(0.32, 0.68, size=2) * n
    sigma = rng.uniform(0.1, 0.14) * n
    # The stripes vary along the direction theta; the Gaussian envelope keeps the patch off the borders,
    # where artefacts are planted, so the real signal and the shortcut never overlap.
    along = (xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)
    envelope = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    texture = contrast * envelope * np.cos(2 * np.pi * along / wavelength + rng.uniform(0, 2 * np.pi))

    grey = np.clip(level + blotches + grain + texture, 0.0, 1.0)
    return np.repeat((grey * 255.0 + 0.5).astype(np.uint8)[:, :, None], 3, axis=2)
