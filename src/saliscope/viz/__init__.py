"""Views of explanations as pictures: overlays on the original photo, comparison panels, safe file writes.

Nothing here changes an Explanation; every picture is computed from its raw attributions.
"""

from .colormaps import SIGNED_CMAP, UNSIGNED_CMAP, colorize, get_cmap, normalized_map
from .display import DisplayHint, display_hint
from .files import atomic_write, save_json, save_npy, save_png
from .outline import Outline
from .overlay import overlay
from .panel import panel

__all__ = [
    "SIGNED_CMAP",
    "UNSIGNED_CMAP",
    "DisplayHint",
    "Outline",
    "atomic_write",
    "colorize",
    "display_hint",
    "get_cmap",
    "normalized_map",
    "overlay",
    "panel",
    "save_json",
    "save_npy",
    "save_png",
]
