"""torchvision:NAME and timm:NAME specs, name checks, offline failures, devices."""

from __future__ import annotations

import socket
import time

import pytest
import torch
import torchvision

from saliscope.core.errors import ModelLoadError
from saliscope.models import IMAGENET_MEAN, IMAGENET_STD, Preprocess, load_model
from saliscope.models.download import hf_cached_file, torch_hub_checkpoint
from saliscope.models.timm_zoo import preprocess_from_model
from saliscope.models.torchvision_zoo import preprocess_for


def test_torchvision_untrained_builds_with_imagenet_defaults() -> None:
    model = load_model("torchvision:resnet18", pretrained=False)
    assert isinstance(model, torchvision.models.ResNet)
    assert not model.training
    assert model.name == "torchvision:resnet18"
    assert model.preprocess == Preprocess(224, 256, "bilinear", IMAGENET_MEAN, IMAGENET_STD)
    assert len(model.labels) == 1000 and model.labels[967] == "espresso"
    assert "layer4.1.conv2" in dict(model.named_modules())  # unwrapped: the architecture's own names


def test_torchvision_preprocess_comes_from_the_weights_metadata() -> None:
    # EfficientNet-B3 evaluates at 300 px after resizing to 320, bicubic (torchvision's metadata).
    pre = preprocess_for("efficientnet_b3")
    transform = torchvision.models.EfficientNet_B3_Weights.DEFAULT.transforms()
    assert pre.size == transform.crop_size[0] == 300
    assert pre.resize == transform.resize_size[0] == 320
    assert pre.interpolation == "bicubic"
    assert pre.mean == tuple(transform.mean) and pre.std == tuple(transform.std)


def test_timm_untrained_builds_with_its_data_config() -> None:
    model = load_model("timm:resnet18", pretrained=False)
    assert not model.training and model.name == "timm:resnet18"
    # resnet18.a1_in1k: 224 px, crop_pct 0.95 → shorter side floor(224 / 0.95) = 235, bicubic.
    assert model.preprocess == Preprocess(224, 235, "bicubic", IMAGENET_MEAN, IMAGENET_STD)
    assert model.labels[281] == "tabby"


def test_timm_non_imagenet_head_gets_generic_labels() -> None:
    import timm

    model = timm.create_model("test_efficientnet", num_classes=7)
    assert preprocess_from_model(model).size == 160
    from saliscope.models.labels import default_labels

    assert default_labels(7) == tuple(f"class {i}" for i in range(7))


@pytest.mark.parametrize(
    "spec,suggestion",
    [
        ("torchvision:resnt50", "resnet50"),
        ("timm:resnt50", "resnet50"),
        ("timm:efficientnet_lite", "efficientnet_lite1"),
    ],
)
def test_unknown_names_suggest_close_ones(spec: str, suggestion: str) -> None:
    with pytest.raises(ModelLoadError, match="no model named") as info:
        load_model(spec, pretrained=False)
    assert suggestion in info.value.fix


@pytest.mark.parametrize("spec", ["resnet50", "imagenet", "", "torchvision:", "timm: "])
def test_unrecognised_specs_list_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(spec)
    assert "NAME" in str(info.value)


def test_bare_known_name_suggests_the_prefix() -> None:
    with pytest.raises(ModelLoadError, match="torchvision:resnet50 or timm:resnet50"):
        load_model("resnet50")


def test_arch_is_only_for_files() -> None:
    with pytest.raises(ModelLoadError, match="arch"):
        load_model("torchvision:resnet18", arch="timm:resnet18", pretrained=False)


def test_timm_pretrained_fails_fast_offline() -> None:
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg("resnet18")
    if (
        hf_cached_file(cfg.hf_hub_id, ["model.safetensors", "pytorch_model.bin"])
        or torch_hub_checkpoint(cfg.url).is_file()
    ):
        pytest.skip("resnet18 weights are cached on this machine")
    start = time.monotonic()
    try:
        load_model("timm:resnet18")
    except ModelLoadError as err:
        assert "timm:resnet18" in err.problem and "pretrained=False" in err.fix
    else:
        pytest.skip("this machine can download timm weights")
    assert time.monotonic() - start < 15
    assert socket.getdefaulttimeout() is None  # our short timeout did not leak


def test_torchvision_pretrained_fails_fast_offline() -> None:
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    if torch_hub_checkpoint(weights.url).is_file():
        pytest.skip("resnet18 weights are cached on this machine")
    start = time.monotonic()
    try:
        load_model("torchvision:resnet18")
    except ModelLoadError as err:
        assert "not on this machine" in err.problem
        assert weights.url in err.fix and "arch='torchvision:resnet18'" in err.fix
    else:
        pytest.skip("this machine can download torchvision weights")
    assert time.monotonic() - start < 15
    assert socket.getdefaulttimeout() is None


def test_bad_devices_are_refused_before_loading() -> None:
    with pytest.raises(ModelLoadError, match="device"):
        load_model("torchvision:resnet18", pretrained=False, device="toaster")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA"):
            load_model("torchvision:resnet18", pretrained=False, device="cuda")


def test_labels_argument_overrides_and_is_checked(tmp_path) -> None:
    names = [f"thing {i}" for i in range(1000)]
    model = load_model("timm:test_efficientnet", pretrained=False, labels=names)
    assert model.labels == tuple(names)
    with pytest.raises(ModelLoadError, match="3 labels but the model has 1000 outputs"):
        load_model("timm:test_efficientnet", pretrained=False, labels=["a", "b", "c"])
    with pytest.raises(ModelLoadError, match="labels file not found"):
        load_model("timm:test_efficientnet", pretrained=False, labels=tmp_path / "nope.txt")


def test_preprocess_matches_torchvision_transform_exactly() -> None:
    import skimage.data
    from PIL import Image

    weights = torchvision.models.EfficientNet_B3_Weights.DEFAULT  # bicubic, 320 → 300
    image = Image.fromarray(skimage.data.chelsea())
    ours = preprocess_for("efficientnet_b3")(image)
    theirs = weights.transforms()(image).unsqueeze(0)
    assert ours.shape == theirs.shape == (1, 3, 300, 300)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_preprocess_matches_timm_transform_exactly() -> None:
    import skimage.data
    import timm
    from PIL import Image

    model = timm.create_model("resnet18", pretrained=False)
    config = timm.data.resolve_data_config({}, model=model)
    image = Image.fromarray(skimage.data.coffee())
    ours = preprocess_from_model(model)(image)
    theirs = timm.data.create_transform(**config)(image).unsqueeze(0)
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_timm_uses_cached_weights_without_touching_the_network(tmp_path, monkeypatch) -> None:
    import timm

    from saliscope.models import timm_zoo

    reference = timm.create_model("test_efficientnet")
    path = tmp_path / "model.pth"
    torch.save(reference.state_dict(), path)
    monkeypatch.setattr(timm_zoo, "hf_cached_file", lambda repo, files: path)
    monkeypatch.setattr(timm_zoo, "host_reachable", lambda url: pytest.fail("the network was probed"))
    model = load_model("timm:test_efficientnet")
    assert torch.equal(model.classifier.weight, reference.classifier.weight)
    path.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="cached weights") as info:
        load_model("timm:test_efficientnet")
    assert f"delete {path}" in info.value.fix
