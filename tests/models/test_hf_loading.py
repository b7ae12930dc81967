"""``hf:`` models: a ``save_pretrained`` folder round-trips with its processor and labels, the processor maps to
the same pixels as Hugging Face's own, and every way it can go wrong is one clear error."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import hf_models
import pytest
import skimage.data
import torch
from PIL import Image

import saliscope as ss
from saliscope.core.errors import ModelLoadError
from saliscope.models.hf_zoo import preprocess_from_processor

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hf_models.save_vit(tmp_path_factory.mktemp("hf") / "tiny-vit")


def test_a_save_pretrained_folder_round_trips_with_its_processor_and_labels(vit_folder: Path) -> None:
    model = ss.load_model(f"hf:{vit_folder}")
    reference = hf_models.vit()
    assert type(model).__name__ == "ViTForImageClassification" and not model.training
    assert model.labels == hf_models.LABELS and model.name == f"hf:{vit_folder}"
    assert model.preprocess == ss.models.Preprocess(
        size=32, resize=32, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3, stretch=True
    )
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x).logits, reference(x).logits)
    e = ss.Gradient(model).explain(x, target="dog")  # a label from id2label
    assert e.target.classes.tolist() == [1, 1] and e.params["output"] == "logits"
    assert ss.load_model(f"hf:{vit_folder}", labels=["a", "b", "c"]).labels == ("a", "b", "c")


def test_the_folder_works_offline_and_without_the_cache(vit_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ss.load_model(f"hf:{vit_folder}").labels == hf_models.LABELS


@pytest.mark.parametrize(
    ("processor", "expected"),
    [
        ("ViTImageProcessor", dict(size=224, resize=224, stretch=True, interpolation="bilinear")),
        ("DeiTImageProcessor", dict(size=224, resize=256, stretch=True, interpolation="bicubic")),
        ("BeitImageProcessor", dict(size=224, resize=224, stretch=True, interpolation="bicubic")),
        ("BitImageProcessor", dict(size=224, resize=224, stretch=False, interpolation="bicubic")),
        ("ConvNextImageProcessor", dict(size=224, resize=256, stretch=False, interpolation="bicubic")),
    ],
)
def test_image_processors_map_to_the_same_pixels(processor: str, expected: dict, tmp_path: Path) -> None:
    kwargs = {"size": {"shortest_edge": 224}} if processor == "ConvNextImageProcessor" else {}
    getattr(transformers, processor)(**kwargs).save_pretrained(tmp_path)
    loaded = transformers.AutoImageProcessor.from_pretrained(tmp_path)
    pre = preprocess_from_processor(loaded)
    assert {k: getattr(pre, k) for k in expected} == expected
    assert pre.mean == tuple(float(v) for v in loaded.image_mean)
    photo = Image.fromarray(skimage.data.chelsea())  # 451×300: the geometry matters
    ours = pre(photo)
    theirs = loaded(photo, return_tensors="pt").pixel_values
    one_level = 1.01 / 255 / min(pre.std)  # resampling may round a pixel one grey level apart
    assert ours.shape == theirs.shape == (1, 3, 224, 224)
    assert float((ours - theirs).abs().max()) <= 2 * one_level
    assert float((ours - theirs).abs().mean()) < 1e-3


def test_a_convnext_checkpoint_at_384_is_squeezed_like_its_processor() -> None:
    pre = preprocess_from_processor(transformers.ConvNextImageProcessor(size={"shortest_edge": 384}))
    assert (pre.size, pre.resize, pre.stretch) == (384, 384, True)


def test_a_folder_without_a_processor_uses_the_model_size_and_says_so(tmp_path: Path) -> None:
    hf_models.vit().save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="no image processor"):
        model = ss.load_model(f"hf:{tmp_path}")
    assert model.preprocess.size == 32


def test_a_hub_name_not_in_the_cache_fails_at_once_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        ss.load_model("hf:google/vit-base-patch16-224")
    assert time.perf_counter() - start < 5  # no request leaves the machine
    err = info.value
    assert "is not a local folder, and it is not in the Hugging Face cache" in err.problem
    assert "hf download google/vit-base-patch16-224" in err.fix and "hf:PATH" in str(err.cli_fix)


def test_path_like_names_that_are_not_folders(tmp_path: Path) -> None:
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file, not a folder"):
        ss.load_model(f"hf:{tmp_path / 'weights.pt'}")
    with pytest.raises(ModelLoadError, match="does not exist"):
        ss.load_model("hf:./no/such/folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        ss.load_model(f"hf:{tmp_path / 'empty'}")


def test_a_checkpoint_that_is_not_an_image_classifier(tmp_path: Path) -> None:
    config = transformers.ViTConfig(**{k: v for k, v in hf_models.VIT_LIKE.items() if "label" not in k})
    transformers.ViTModel(config).save_pretrained(tmp_path / "backbone")  # no classification head
    with pytest.raises(ModelLoadError, match=r"is not an image classifier \(ViTModel\)"):
        ss.load_model(f"hf:{tmp_path / 'backbone'}")
    bert = transformers.BertConfig(
        vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    )
    transformers.BertForSequenceClassification(bert).save_pretrained(tmp_path / "text")
    with pytest.raises(ModelLoadError, match="not an image classifier") as info:
        ss.load_model(f"hf:{tmp_path / 'text'}")
    assert "AutoModelForImageClassification" in info.value.fix


def test_a_checkpoint_with_its_own_code_is_refused(vit_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "remote"
    hf_models.save_vit(folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageClassification": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        ss.load_model(f"hf:{folder}")


def test_missing_head_weights_are_refused(vit_folder: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "headless"
    hf_models.save_vit(folder)
    weights = load_file(folder / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("classifier.")}, folder / "model.safetensors")
    with pytest.raises(ModelLoadError, match=r"do not fill the model \(missing: classifier"):
        ss.load_model(f"hf:{folder}")


def test_without_transformers_one_line_names_the_extra(vit_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` raises ImportError
    with pytest.raises(ModelLoadError) as info:
        ss.load_model(f"hf:{vit_folder}")
    assert "transformers package, which is not installed" in info.value.problem
    assert 'pip install -e ".[hf]"' in info.value.fix


def test_random_weights_from_the_configuration_only(vit_folder: Path) -> None:
    model = ss.load_model(f"hf:{vit_folder}", pretrained=False)
    assert model.labels == hf_models.LABELS
    assert not torch.equal(model.classifier.weight, hf_models.vit().classifier.weight)


def test_a_hub_name_in_the_cache_loads_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hugging Face cache's layout (models--ORG--NAME/snapshots/<commit>, refs/main), as `hf download` leaves it."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / "models--acme--tiny-vit"
    hf_models.save_vit(repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = ss.load_model("hf:acme/tiny-vit")
    assert model.labels == hf_models.LABELS and model.name == "hf:acme/tiny-vit"
    assert torch.equal(model.classifier.weight, hf_models.vit().classifier.weight)
