"""Class names: ImageNet's, a user's list or file, generic ones."""

from __future__ import annotations

import pytest
import torchvision

from saliscope.core.errors import ModelLoadError
from saliscope.models.labels import default_labels, imagenet_labels, resolve_labels


def test_imagenet_labels_are_unique_and_equal_torchvisions() -> None:
    labels = imagenet_labels()
    assert len(labels) == len(set(labels)) == 1000
    assert labels == tuple(torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"])
    named = (labels[281], labels[282], labels[285], labels[967])
    assert named == ("tabby", "tiger cat", "Egyptian cat", "espresso")


def test_defaults() -> None:
    assert default_labels(1000) is imagenet_labels()
    assert default_labels(3) == ("class 0", "class 1", "class 2")
    assert default_labels(None) == ()


def test_labels_file(tmp_path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("\ufeffcat\n  dog \nbird\n\n\n", encoding="utf-8")  # BOM, padding, trailing blanks
    assert resolve_labels(path, 3) == ("cat", "dog", "bird")
    assert resolve_labels(str(path), None) == ("cat", "dog", "bird")
    with pytest.raises(ModelLoadError, match="has 3 labels but the model has 4 outputs"):
        resolve_labels(path, 4)
    with pytest.raises(ModelLoadError, match="directory"):
        resolve_labels(tmp_path, 3)
    binary = tmp_path / "labels.bin"
    binary.write_bytes(b"\xff\xfe\xfa\x00")
    with pytest.raises(ModelLoadError, match="cannot read labels file"):
        resolve_labels(binary, 3)


def test_labels_sequence() -> None:
    assert resolve_labels(["a", "b"], 2) == ("a", "b")
    assert resolve_labels(("a", 1), None) == ("a", "1")
    with pytest.raises(ModelLoadError):
        resolve_labels(["a"], 2)
