"""Local model files: state dicts (with arch=), whole pickled modules (trusted), TorchScript, and broken files."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import shared_objects as model_fixtures
import torch
from torch import nn

from saliscope.core.errors import ModelLoadError
from saliscope.models import load_model
from saliscope.models.default import DEFAULT_PREPROCESS, weights_path

TIMM_ARCH = "timm:test_efficientnet"  # ~0.4 M parameters: quick to build, save and load


def probe(model: nn.Module, size: int = 64) -> torch.Tensor:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(x)


@pytest.fixture
def default_model() -> nn.Module:
    return model_fixtures.default_model()


@pytest.fixture(scope="module")
def timm_model() -> nn.Module:
    torch.manual_seed(0)
    return load_model(TIMM_ARCH, pretrained=False)


def test_state_dict_round_trip_is_exact(tmp_path: Path, timm_model: nn.Module) -> None:
    path = tmp_path / "weights.pth"
    torch.save(timm_model.state_dict(), path)
    loaded = load_model(path, arch=TIMM_ARCH)
    assert torch.equal(probe(loaded), probe(timm_model))
    assert not loaded.training
    assert loaded.preprocess == timm_model.preprocess and loaded.name == str(path)
    assert len(loaded.labels) == 1000


def test_checkpoint_dicts_and_wrapper_prefixes(tmp_path: Path, timm_model: nn.Module) -> None:
    sd = timm_model.state_dict()
    variants = {
        "lightning.ckpt": {"epoch": 3, "state_dict": {f"model.{k}": v for k, v in sd.items()}},
        "ddp.pth": {f"module.{k}": v for k, v in sd.items()},
        "compiled.pt": {"model": {f"_orig_mod.{k}": v for k, v in sd.items()}, "optimizer": {}},
    }
    for name, content in variants.items():
        torch.save(content, tmp_path / name)
        assert torch.equal(probe(load_model(tmp_path / name, arch=TIMM_ARCH)), probe(timm_model)), name


def test_safetensors_state_dict(tmp_path: Path, timm_model: nn.Module) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in timm_model.state_dict().items()}, str(path))
    assert torch.equal(probe(load_model(path, arch=TIMM_ARCH)), probe(timm_model))


def test_fine_tuned_head_sets_the_class_count(tmp_path: Path) -> None:
    import torchvision

    model = torchvision.models.mobilenet_v3_small(num_classes=5).eval()
    path = tmp_path / "five.pt"
    torch.save(model.state_dict(), path)
    loaded = load_model(path, arch="torchvision:mobilenet_v3_small")
    assert loaded.labels == tuple(f"class {i}" for i in range(5))
    assert torch.equal(probe(loaded), probe(model))
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("a\nb\nc\nd\ne\n")
    named = load_model(path, arch="torchvision:mobilenet_v3_small", labels=labels_file)
    assert named.labels == ("a", "b", "c", "d", "e")
    with pytest.raises(ModelLoadError, match="4 labels but the model has 5 outputs"):
        load_model(path, arch="torchvision:mobilenet_v3_small", labels=["a", "b", "c", "d"])


def test_default_arch_accepts_timm_and_original_names(tmp_path: Path, default_model: nn.Module) -> None:
    path = tmp_path / "lite0.pth"
    torch.save(default_model.state_dict(), path)
    from_timm_names = load_model(path, arch="default")
    from_original_names = load_model(weights_path(), arch="default")
    expected = probe(default_model)
    assert torch.equal(probe(from_timm_names), expected)
    assert torch.equal(probe(from_original_names), expected)
    assert from_timm_names.preprocess == DEFAULT_PREPROCESS


def test_whole_pickled_module(tmp_path: Path) -> None:
    import timm

    model = timm.create_model("test_efficientnet", num_classes=3).eval()
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    loaded = load_model(path, trust_pickle=True)
    assert type(loaded) is type(model) and not loaded.training
    assert torch.equal(probe(loaded), probe(model))
    assert loaded.labels == ("class 0", "class 1", "class 2")  # counted by running the model


def test_whole_module_keeps_its_own_preprocessing_and_labels(tmp_path: Path) -> None:
    from saliscope.models.preprocess import Preprocess

    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    own = Preprocess(size=32, resize=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    net.preprocess = own  # as saliscope's TinyCNN, or a model load_model() returned, carries them
    net.labels = ("normal", "pneumonia")
    path = tmp_path / "own.pt"
    torch.save(net, path)
    loaded = load_model(path, trust_pickle=True)
    # Not ImageNet's resize-256 / crop-224, which would cut the borders off a 32×32 image.
    assert loaded.preprocess == own and loaded.preprocess.crop_box(32, 32) == (0.0, 0.0, 32.0, 32.0)
    assert loaded.labels == ("normal", "pneumonia")
    assert load_model(path, labels=["a", "b"], trust_pickle=True).labels == ("a", "b")  # an explicit choice wins
    assert load_model(path, arch=TIMM_ARCH, trust_pickle=True).preprocess != own  # so does an explicit --arch

    net.labels = ("one", "two", "three")  # labels that do not fit the outputs are not trusted
    net.preprocess = "not a Preprocess"
    torch.save(net, path)
    odd = load_model(path, trust_pickle=True)
    assert odd.labels == ("class 0", "class 1") and odd.preprocess.size == 224


def test_whole_module_whose_class_is_gone(tmp_path: Path) -> None:
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / "gone_net.py").write_text(
        textwrap.dedent(
            """
            import torch
            class GoneNet(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.fc = torch.nn.Linear(3, 2)
                def forward(self, x):
                    return self.fc(x.mean((2, 3)))
            """
        )
    )
    sys.path.insert(0, str(module_dir))
    try:
        import gone_net  # type: ignore[import-not-found]

        torch.save(gone_net.GoneNet(), tmp_path / "gone.pt")
        assert load_model(tmp_path / "gone.pt", trust_pickle=True).labels == ("class 0", "class 1")
    finally:
        sys.path.remove(str(module_dir))
        sys.modules.pop("gone_net", None)
    with pytest.raises(ModelLoadError, match="class cannot be found") as info:
        load_model(tmp_path / "gone.pt", trust_pickle=True)
    assert "state_dict" in info.value.fix


# torch's notices that TorchScript is deprecated (FutureWarning or DeprecationWarning by version)
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_torchscript(tmp_path: Path, timm_model: nn.Module) -> None:
    path = tmp_path / "traced.pt"
    with torch.no_grad():
        traced = torch.jit.trace(timm_model, torch.zeros(1, 3, 64, 64))
    torch.jit.save(traced, str(path))
    loaded = load_model(path)
    assert isinstance(loaded, torch.jit.ScriptModule)
    assert torch.allclose(probe(loaded), probe(timm_model), atol=1e-5)
    assert len(loaded.labels) == 1000 and loaded.labels[967] == "espresso"
    assert loaded.preprocess.size == 224


def test_state_dict_without_arch_says_which_flag(tmp_path: Path, timm_model: nn.Module) -> None:
    path = tmp_path / "weights.pth"
    torch.save(timm_model.state_dict(), path)
    with pytest.raises(ModelLoadError, match="only weights") as info:
        load_model(path)
    assert "--arch timm:resnet18" in info.value.cli_fix
    assert "arch='timm:resnet18'" in info.value.fix


def test_wrong_arch_names_the_keys(tmp_path: Path, timm_model: nn.Module) -> None:
    path = tmp_path / "weights.pth"
    torch.save(timm_model.state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"do not fit torchvision:resnet18.*missing keys: conv1\.weight"):
        load_model(path, arch="torchvision:resnet18")
    with pytest.raises(ModelLoadError, match="unknown architecture"):
        load_model(path, arch="resnet18")
    with pytest.raises(ModelLoadError, match="no model named"):
        load_model(path, arch="timm:nonexistent_net")


def test_broken_files(tmp_path: Path, timm_model: nn.Module) -> None:
    good = tmp_path / "good.pth"
    torch.save(timm_model.state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    cases = {
        tmp_path / "missing.pth": "not found",
        tmp_path: "directory",
        empty: "empty",
        truncated: "not a readable PyTorch model file",
        text: "not a readable PyTorch model file",
    }
    for path, message in cases.items():
        with pytest.raises(ModelLoadError, match=message):
            load_model(path, arch=TIMM_ARCH)
    scalars = tmp_path / "scalars.pt"
    torch.save({"epoch": 3, "lr": 0.1}, scalars)
    with pytest.raises(ModelLoadError, match="no model or state dict"):
        load_model(scalars, arch=TIMM_ARCH)
    with pytest.raises(ModelLoadError, match="not found"):
        load_model("models/does-not-exist.pt")
