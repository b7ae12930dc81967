"""Reading images: one path, array or PIL image in, one 8-bit RGB PIL image out."""

from .images import IMAGE_SUFFIXES, ImageSource, list_images, load_image
from .samples import SAMPLE_NAMES, sample_images

__all__ = ["IMAGE_SUFFIXES", "SAMPLE_NAMES", "ImageSource", "list_images", "load_image", "sample_images"]
