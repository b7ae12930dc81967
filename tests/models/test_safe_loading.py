"""Loading is safe by default: pickled objects are never unpickled without consent, and saliscope's own format
(``save_model``) stores a model as plain data that ``torch.load(weights_only=True)`` reads."""

from __future__ import annotations

import pathlib
from pathlib import Path

import hf_models
import pytest
import torch
import torchvision
from torch import nn

import saliscope as ss
from saliscope.core.errors import ModelLoadError
from saliscope.models.preprocess import Preprocess
from saliscope.train import TinyCNN


class Touch:
    """Unpickling this object creates a file: the kind of side effect a model file from the internet could have."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def probe(model: nn.Module, size: int) -> torch.Tensor:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x)
    return out.logits if hasattr(out, "logits") else out


def test_a_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"state_dict": TinyCNN(2).state_dict(), "hook": Touch(marker)}, path)
    with pytest.raises(ModelLoadError) as info:
        ss.load_model(path, arch="timm:test_resnet")
    assert not marker.exists()  # the file's code did not run
    err = info.value
    assert "holds pickled Python objects (" in err.problem and "pathlib.PosixPath" in err.problem
    assert "unpickling runs code stored in the file" in err.problem
    for way in ("arch=", "torch.jit.save", "saliscope.save_model", "trust_pickle=True"):
        assert way in err.fix
    for way in ("--arch", "torch.jit.save", "saliscope.save_model", "--trust-pickle"):
        assert way in str(err.cli_fix)
    with pytest.raises(ModelLoadError):  # with consent it is unpickled (and then holds no model)
        ss.load_model(path, arch="timm:test_resnet", trust_pickle=True)
    assert marker.exists()


def test_a_whole_pickled_module_needs_consent(tmp_path: Path) -> None:
    model = TinyCNN(2, width=4).eval()
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(ModelLoadError, match=r"pickled Python objects \(saliscope\.models\.preprocess\.Preprocess"):
        ss.load_model(path)
    assert torch.equal(probe(ss.load_model(path, trust_pickle=True), 64), probe(model, 64))


def test_tiny_cnn_round_trips_through_save_model(tmp_path: Path) -> None:
    pre = Preprocess(size=32, resize=32, mean=(0.2, 0.3, 0.4), std=(0.5, 0.6, 0.7))
    model = TinyCNN(3, width=5, labels=("a", "b", "c"), preprocess=pre, seed=4).eval()
    path = ss.save_model(model, tmp_path / "sub" / "tiny.pt")
    record = torch.load(path, weights_only=True)  # plain data only
    assert record["arch"] == "saliscope.train.tiny_cnn:TinyCNN" and record["arch_args"] == {"n_classes": 3, "width": 5}
    loaded = ss.load_model(path)
    assert isinstance(loaded, TinyCNN) and not loaded.training
    assert loaded.preprocess == pre and loaded.labels == ("a", "b", "c")
    assert torch.equal(probe(loaded, 32), probe(model, 32))


@pytest.mark.parametrize(("spec", "size"), [("timm:test_efficientnet", 160), ("torchvision:squeezenet1_1", 64)])
def test_load_model_results_round_trip(spec: str, size: int, tmp_path: Path) -> None:
    model = ss.load_model(spec, pretrained=False, labels=[f"c{i}" for i in range(1000)])
    assert model.arch == spec
    path = ss.save_model(model, tmp_path / "m.pt")
    loaded = ss.load_model(path)
    assert type(loaded) is type(model) and loaded.arch == spec
    assert loaded.preprocess == model.preprocess and loaded.labels == model.labels
    assert torch.equal(probe(loaded, size), probe(model, size))


def test_a_fine_tuned_head_and_an_explicit_architecture(tmp_path: Path) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.squeezenet1_1(num_classes=4).eval()
    with pytest.raises(ModelLoadError, match="cannot tell which architecture this SqueezeNet is") as info:
        ss.save_model(net, tmp_path / "n.pt")
    assert "arch='torchvision:NAME'" in info.value.fix and "torch.jit.save" in info.value.fix
    loaded = ss.load_model(ss.save_model(net, tmp_path / "n.pt", arch="torchvision:squeezenet1_1"))
    assert loaded.labels == ("class 0", "class 1", "class 2", "class 3")
    assert torch.equal(probe(loaded, 64), probe(net, 64))


def test_a_hugging_face_model_round_trips(tmp_path: Path) -> None:
    folder = hf_models.save_vit(tmp_path / "vit")
    model = ss.load_model(f"hf:{folder}")
    loaded = ss.load_model(ss.save_model(model, tmp_path / "vit.pt"))
    assert type(loaded).__name__ == "ViTForImageClassification"
    assert loaded.labels == hf_models.LABELS and loaded.preprocess == model.preprocess
    assert torch.equal(probe(loaded, 32), probe(model, 32))


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_what_save_model_cannot_store_says_what_to_do_instead(tmp_path: Path) -> None:
    scripted = torch.jit.script(TinyCNN(2, width=2).eval())
    with pytest.raises(ModelLoadError, match="already a safe, self-contained file format") as info:
        ss.save_model(scripted, tmp_path / "s.pt")
    assert "torch.jit.save" in info.value.fix
    with pytest.raises(ModelLoadError, match="unknown architecture 'resnet18'"):
        ss.save_model(TinyCNN(2), tmp_path / "t.pt", arch="resnet18")
    with pytest.raises(ModelLoadError, match=r"needs an nn\.Module"):
        ss.save_model("model", tmp_path / "t.pt")  # type: ignore[arg-type]


def test_a_file_from_a_newer_format_is_named(tmp_path: Path) -> None:
    path = ss.save_model(TinyCNN(2, width=2), tmp_path / "t.pt")
    record = torch.load(path, weights_only=True)
    record["saliscope_model"] = 99
    torch.save(record, path)
    with pytest.raises(ModelLoadError, match="newer saliscope"):
        ss.load_model(path)
