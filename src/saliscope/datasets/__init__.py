"""Built-in benchmark data: small image sets with a planted shortcut, and their controls.

from saliscope.datasets import Artefact, make_shortcut_dataset
data = make_shortcut_dataset("bench", artefact=Artefact(kind="tag", position="top-right"))
data.train, data.test, data.test_swapped   # ImageFolder-style folders of PNGs
"""

from .artefact import Artefact, ArtefactKind
from .shortcut import ShortcutDataset, make_shortcut_dataset

__all__ = ["Artefact", "ArtefactKind", "ShortcutDataset", "make_shortcut_dataset"]
