"""The model options every model-loading command shares (--input-size, --resize, --no-crop, --mean, --std,
--trust-pickle), the TorchScript case end to end, and the bad inputs of loading, one clear line each."""

from __future__ import annotations

import json
from pathlib import Path

import hf_models
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch import nn

from saliscope.cli.main import cli
from saliscope.models.preprocess import Preprocess
from saliscope.train import TinyCNN

OPTIONS = ("--input-size", "--resize", "--no-crop", "--mean", "--std", "--trust-pickle", "--model", "--arch")


def one_error_line(result) -> str:
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)).save(path)  # landscape, 90×60
    return path


class Net(nn.Module):
    """A small CNN for 48×48 inputs (its own normalisation is not ImageNet's)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3, padding=1))
            self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x)).mean((2, 3)))


@pytest.mark.parametrize("command", ["explain", "evaluate", "compare", "audit"])
def test_every_model_loading_command_has_the_model_options(command: str) -> None:
    from saliscope.cli.main import cli as group

    names = {opt for p in group.commands[command].params for opt in p.opts}
    assert set(OPTIONS) <= names


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_torchscript_end_to_end_with_its_own_preprocessing(photo: Path, tmp_path: Path) -> None:
    net = Net().eval()
    scripted = tmp_path / "net.pt"
    torch.jit.save(torch.jit.trace(net, torch.zeros(1, 3, 48, 48)), str(scripted))
    out = tmp_path / "out"
    args = ["explain", str(photo), "--model", str(scripted), "-m", "gradient", "-o", str(out)]
    args += ["--input-size", "48", "--no-crop", "--mean", "0.5,0.4,0.3", "--std", "0.2,0.25,0.3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    # The map is the gradient of the predicted class at exactly the input those options describe.
    pre = Preprocess(size=48, resize=48, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    x = pre(Image.open(photo)).requires_grad_(True)
    logits = net(x)
    (expected,) = torch.autograd.grad(logits[0, int(logits.argmax())], x)
    saved = np.load(out / "photo" / "gradient.npy")
    assert saved.shape == (3, 48, 48)
    np.testing.assert_allclose(saved, expected[0].numpy(), rtol=1e-4, atol=1e-7)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"][0]["crop_box"] == [15.0, 0.0, 75.0, 60.0]  # 60 px square from the middle, no more


def test_input_size_keeps_the_crop_ratio_and_resize_sets_it(photo: Path, tmp_path: Path) -> None:
    pre = Preprocess(size=224, resize=256)
    assert pre.with_overrides(input_size=384) == Preprocess(size=384, resize=438)
    assert pre.with_overrides(input_size=32, resize=40) == Preprocess(size=32, resize=40)
    assert pre.with_overrides(crop=False) == Preprocess(size=224, resize=224)
    assert pre.with_overrides(mean=(0, 0, 0), std=(1, 1, 1)) == Preprocess(mean=(0, 0, 0), std=(1, 1, 1))


def test_trust_pickle_on_the_command_line(photo: Path, tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(TinyCNN(3, width=2, preprocess=Preprocess(size=32, resize=32)).eval(), path)
    args = ["explain", str(photo), "--model", str(path), "-m", "gradient", "-o", str(tmp_path / "o")]
    line = one_error_line(CliRunner().invoke(cli, args))
    assert "holds pickled Python objects" in line and "--trust-pickle" in line and "trust_pickle=" not in line
    assert not (tmp_path / "o").exists()
    assert CliRunner().invoke(cli, [*args, "--trust-pickle"]).exit_code == 0


def test_an_hf_folder_on_the_command_line(photo: Path, tmp_path: Path) -> None:
    folder = hf_models.save_vit(tmp_path / "vit")
    out = tmp_path / "out"
    args = ["explain", str(photo), "--model", f"hf:{folder}", "-m", "gradient,gradcam,attention-rollout"]
    result = CliRunner().invoke(cli, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split()[1] in hf_models.LABELS  # labels from id2label in the top 5
    assert sorted(p.name for p in (out / "photo").glob("*.npy")) == [
        "attention-rollout.npy",
        "gradcam.npy",
        "gradient.npy",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"][0]["crop_box"] == [0.0, 0.0, 90.0, 60.0]  # ViT's processor squeezes the whole photo


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mean", "0.5,0.5"], "error: --mean needs three numbers (R,G,B), got 2: 0.5,0.5 — pass one number per"),
        (["--std", "0.2,0,0.2"], "error: --std has a value of 0: normalising divides by the standard deviation"),
        (["--mean", "a,b,c"], "error: --mean 'a,b,c' is not a list of numbers — pass three numbers R,G,B"),
        (["--resize", "20", "--input-size", "32"], "error: the resize size 20 is smaller than the input size 32"),
        (["--resize", "40", "--no-crop"], "error: a resize size and no crop contradict each other"),
    ],
)
def test_bad_preprocessing_options_are_one_line(photo: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    path = tmp_path / "tiny.pt"
    from saliscope import save_model

    save_model(TinyCNN(2, width=2), path)
    out = tmp_path / "o"
    result = CliRunner().invoke(cli, ["explain", str(photo), "--model", str(path), "-o", str(out), *extra])
    assert one_error_line(result).startswith(message)
    assert not out.exists()


def test_bad_hf_models_are_one_line(photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(cli, ["explain", str(photo), "--model", "hf:someone/not-here"])
    line = one_error_line(result)
    assert "not in the Hugging Face cache" in line and "--model hf:PATH" in line
    config = transformers.ViTConfig(**{k: v for k, v in hf_models.VIT_LIKE.items() if "label" not in k})
    transformers.ViTModel(config).save_pretrained(tmp_path / "backbone")
    result = CliRunner().invoke(cli, ["explain", str(photo), "--model", f"hf:{tmp_path / 'backbone'}"])
    assert "is not an image classifier (ViTModel)" in one_error_line(result)


class SeveralTensors(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = x.mean((2, 3))
        return {"a": scores, "b": -scores}


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
def test_a_dict_output_without_logits_is_one_line(photo: Path, tmp_path: Path) -> None:
    path = tmp_path / "dict.pt"
    torch.jit.save(torch.jit.script(SeveralTensors()), str(path))
    result = CliRunner().invoke(cli, ["explain", str(photo), "--model", str(path), "--input-size", "32"])
    line = one_error_line(result)
    assert "returned a dict with several (batch, num_classes) tensors and no 'logits' entry" in line
    assert "'a' (1×3), 'b' (1×3)" in line and "OutputTarget" not in line  # the CLI wording: no Python targets
