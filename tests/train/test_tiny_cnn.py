"""TinyCNN, train_tiny_cnn and evaluate_accuracy: seeds, saved files, folder statistics, exact accuracies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import saliscope
from saliscope.core.errors import InputError
from saliscope.datasets import make_shortcut_dataset
from saliscope.models.preprocess import Preprocess
from saliscope.train import TinyCNN, evaluate_accuracy, train_tiny_cnn


def test_tiny_cnn_is_seeded_and_leaves_the_global_generator_alone() -> None:
    state = torch.random.get_rng_state()
    a, b, c = TinyCNN(3, width=4, seed=1), TinyCNN(3, width=4, seed=1), TinyCNN(3, width=4, seed=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert a(torch.zeros(2, 3, 20, 20)).shape == (2, 3)
    assert a.labels == ("class_0", "class_1", "class_2")
    with pytest.raises(InputError):
        TinyCNN(2, labels=("only one",))


def test_a_saved_tiny_cnn_loads_whole(tmp_path: Path) -> None:
    model = TinyCNN(2, width=4, labels=("normal", "pneumonia"), preprocess=Preprocess(size=32, resize=32)).eval()
    path = saliscope.save_model(model, tmp_path / "tiny.pt")
    back = torch.load(path, weights_only=True)  # plain data: nothing in the file runs code
    assert back["labels"] == ["normal", "pneumonia"] and back["arch"] == "saliscope.train.tiny_cnn:TinyCNN"
    loaded = saliscope.load_model(path)
    assert loaded.labels == ("normal", "pneumonia") and loaded.preprocess == model.preprocess
    assert isinstance(loaded, TinyCNN)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory):
    return make_shortcut_dataset(tmp_path_factory.mktemp("tiny"), n_train=3, n_test=2, image_size=16)


def test_training_is_seeded_normalised_by_its_data_and_leaves_no_trace(tiny_data) -> None:
    state = torch.random.get_rng_state()
    kwargs = dict(epochs=1, batch_size=4, width=2)
    a = train_tiny_cnn(tiny_data.train, seed=0, **kwargs)
    b = train_tiny_cnn(tiny_data.train, seed=0, **kwargs)
    c = train_tiny_cnn(tiny_data.train, seed=1, **kwargs)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert not a.training and all(p.grad is None for p in a.parameters())
    assert a.labels == ("normal", "pneumonia")
    pixels = np.stack([np.asarray(Image.open(p)) for p in sorted(tiny_data.train.rglob("*.png"))]) / 255.0
    assert a.preprocess.size == a.preprocess.resize == 16
    np.testing.assert_allclose(a.preprocess.mean, pixels.mean(axis=(0, 1, 2)), atol=6e-5)
    np.testing.assert_allclose(a.preprocess.std, pixels.std(axis=(0, 1, 2), ddof=1), atol=6e-5)


def test_training_arguments_that_cannot_work(tiny_data) -> None:
    with pytest.raises(InputError, match="needs an irrelevant_mask"):
        train_tiny_cnn(tiny_data.train, rrr_weight=10.0)
    with pytest.raises(InputError, match="would be ignored"):
        train_tiny_cnn(tiny_data.train, irrelevant_mask=tiny_data.artefact_mask())
    with pytest.raises(InputError, match="no folder"):
        train_tiny_cnn(tiny_data.root / "missing")


class AlwaysFirst(nn.Module):
    """Predicts its first label for every image, whatever the image."""

    def __init__(self, labels: tuple[str, ...], size: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.arange(len(labels), 0, -1, dtype=torch.float32))
        self.labels = labels
        self.preprocess = Preprocess(size=size, resize=size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1)


def test_accuracy_matches_folders_to_labels_by_name(tiny_data) -> None:
    # 2 test images per class: a model always saying "normal" is right on exactly half of them
    model = AlwaysFirst(("normal", "pneumonia"), 16).train()
    assert evaluate_accuracy(model, tiny_data.test) == 0.5
    assert model.training  # put back after the eval-mode pass
    extra = tiny_data.root / "extra"
    for name, n in (("pneumonia", 3), ("normal", 1)):
        (extra / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (16, 16)).save(extra / name / f"{i}.png")
    assert evaluate_accuracy(AlwaysFirst(("pneumonia", "normal", "other"), 16), extra, batch_size=3) == 0.75
    assert evaluate_accuracy(AlwaysFirst(("normal", "pneumonia"), 16), extra) == 0.25
    with pytest.raises(InputError, match="does not know"):
        evaluate_accuracy(AlwaysFirst(("cat", "dog"), 16), extra)
    with pytest.raises(InputError, match="preprocess"):
        evaluate_accuracy(nn.Linear(2, 2), extra)
