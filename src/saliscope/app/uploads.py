"""Photos the explorer accepts: the bytes a browser uploaded, or a bundled sample named from a fixed list.

Nothing here opens a path a browser sent. Uploads arrive as bytes and are decoded in memory, only by the
decoders of common photo formats (no EPS, which would run Ghostscript); everything unusable — not an image,
a decompression bomb, a truncated file, a picture smaller than 8×8 — becomes one :class:`ImageError` whose
message the page shows.
"""

from __future__ import annotations

import io
import re
import warnings
from functools import cache

from PIL import Image, UnidentifiedImageError

from ..core.errors import ImageError
from ..io.images import MIN_SIDE, load_image
from ..io.samples import SAMPLE_NAMES

PHOTO_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF")
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
_FORMATS_WORDS = "a JPEG, PNG, WebP, GIF, BMP or TIFF photo"


def read_upload(data: bytes | None, *, max_bytes: int = MAX_UPLOAD_BYTES) -> Image.Image:
    """Uploaded bytes → an RGB photo, or :class:`ImageError` naming what is wrong and what to do.

    Pillow's pixel limit (``PIL.Image.MAX_IMAGE_PIXELS``) is read, never changed; above it the upload is
    refused before any pixel is decoded.
    """
    if not data:
        raise ImageError("the upload is empty (0 bytes)", f"upload {_FORMATS_WORDS}")
    if len(data) > max_bytes:
        raise ImageError(
            f"the upload is {len(data) / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB this page accepts",
            "downscale or re-compress the photo first",
        )
    limit = Image.MAX_IMAGE_PIXELS
    Image.init()  # registers every plugin (MPO among them) once; cheap after the first call
    formats = [f for f in PHOTO_FORMATS if f in Image.OPEN]
    try:
        with warnings.catch_warnings():
            # Between 1× and 2× the limit Pillow only warns; a local filter makes that an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=formats) as opened:
                if min(opened.size) < MIN_SIDE:
                    width, height = opened.size
                    raise ImageError(
                        f"the photo is {width}×{height} pixels; the model needs at least {MIN_SIDE}×{MIN_SIDE}",
                        "upload a larger photo",
                    )
                opened.load()
                return load_image(opened)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(found.group(1)):,} pixels" if found else "more pixels than allowed"
        limit_words = f"{limit:,}" if limit else "Pillow's"
        raise ImageError(
            f"the upload has {count}, more than the safety limit of {limit_words} (a possible decompression bomb)",
            "downscale the photo first, e.g. to 4000 pixels on its long side",
        ) from None
    except UnidentifiedImageError:
        raise ImageError("the upload is not an image this page can read", f"upload {_FORMATS_WORDS}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ImageError(
            f"the upload is truncated or damaged ({reason})", "re-export the photo and upload it again"
        ) from None


def sample_photo(name: str) -> Image.Image:
    """One of the photos bundled with scikit-image, by name; any other name is refused."""
    if name not in SAMPLE_NAMES:
        raise ImageError(f"there is no sample photo {name!r}", f"pick one of: {', '.join(SAMPLE_NAMES)}")
    return _sample(name).copy()


@cache
def _sample(name: str) -> Image.Image:
    import skimage.data  # slow to import; only needed here

    return load_image(getattr(skimage.data, name)())
