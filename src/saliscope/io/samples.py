"""The four photos bundled with scikit-image, for demos, tests and the CLI's ``--sample``."""

from __future__ import annotations

from PIL import Image

from .images import load_image

SAMPLE_NAMES: tuple[str, ...] = ("chelsea", "coffee", "astronaut", "rocket")


def sample_images() -> dict[str, Image.Image]:
    """``{"chelsea": cat, "coffee": espresso cup, "astronaut": portrait, "rocket": launch}`` as RGB images.

    The photos ship inside scikit-image, so this works offline.
    """
    import skimage.data  # imported here: scikit-image is slow to import and only needed for samples

    return {name: load_image(getattr(skimage.data, name)()) for name in SAMPLE_NAMES}
