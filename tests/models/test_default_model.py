"""The embedded default: EfficientNet-Lite0 with the shipped weights, renamed key by key."""

from __future__ import annotations

import pytest
import shared_objects as model_fixtures
import timm
import torch
from torch import Tensor, nn

from saliscope.core.errors import ModelLoadError
from saliscope.models import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from saliscope.models import default as default_model_module
from saliscope.models.default import convert_state_dict, module_name_map, weights_path

CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967


@pytest.fixture
def default_model() -> nn.Module:
    return model_fixtures.default_model()


@pytest.fixture
def samples() -> dict:
    return model_fixtures.samples()


@pytest.fixture
def sample_probs() -> dict[str, Tensor]:
    return model_fixtures.sample_probs()


@pytest.fixture(scope="module")
def source_state_dict() -> dict[str, Tensor]:
    return dict(torch.load(weights_path(), map_location="cpu", weights_only=True))


@pytest.fixture(scope="module")
def timm_lite0() -> nn.Module:
    return default_model_module.build_architecture()


def test_default_model_recognises_the_sample_photos(sample_probs: dict[str, Tensor]) -> None:
    assert int(sample_probs["chelsea"].argmax()) in CATS
    assert float(sample_probs["chelsea"][sorted(CATS)].sum()) > 0.85
    assert int(sample_probs["coffee"].argmax()) == ESPRESSO
    assert float(sample_probs["coffee"][ESPRESSO]) > 0.9
    assert int(sample_probs["rocket"].argmax()) in {657, 744, 812}  # missile, projectile, space shuttle


def test_default_model_is_plain_timm_in_eval_mode(default_model: nn.Module) -> None:
    assert isinstance(default_model, timm.models.EfficientNet)
    assert not default_model.training
    assert not any(m.training for m in default_model.modules())
    names = dict(default_model.named_modules())
    assert "blocks.6.0" in names and "conv_head" in names
    assert default_model.name == "default"
    assert isinstance(default_model.preprocess, Preprocess)
    assert not isinstance(default_model.preprocess, nn.Module)
    # Attaching attributes must not add state: the state dict is exactly timm's.
    assert set(default_model.state_dict()) == set(timm.create_model("tf_efficientnet_lite0").state_dict())


def test_default_labels(default_model: nn.Module) -> None:
    labels = default_model.labels
    assert isinstance(labels, tuple) and len(labels) == 1000
    assert "espresso" in labels[ESPRESSO]
    assert labels[281] == "tabby" and labels[285] == "Egyptian cat"


def test_default_preprocess_fits_the_weights_batchnorm_statistics(default_model: nn.Module, samples: dict) -> None:
    """Why mean = std = 0.5: the stem BatchNorm's running statistics fit inputs normalised that way.

    Measured (median Gaussian KL between per-channel input statistics and running statistics over the
    four sample photos): 0.09 with 0.5/0.5 vs 0.71 with ImageNet mean/std.
    """
    chosen = default_model.preprocess
    imagenet = Preprocess(chosen.size, chosen.resize, chosen.interpolation, IMAGENET_MEAN, IMAGENET_STD)

    def stem_kl(pre: Preprocess) -> float:
        with torch.no_grad():
            h = default_model.conv_stem(pre(list(samples.values())))
        flat = h.transpose(0, 1).flatten(1)
        mean, var = flat.mean(1), flat.var(1)
        bn = default_model.bn1
        rv = bn.running_var + bn.eps
        kl = 0.5 * (var / rv + (mean - bn.running_mean) ** 2 / rv - 1 - torch.log(var / rv))
        return float(kl.median())

    assert chosen.mean == (0.5, 0.5, 0.5) and chosen.std == (0.5, 0.5, 0.5)
    assert stem_kl(chosen) * 4 < stem_kl(imagenet)


# ----- the name mapping -------------------------------------------------------------------------------


def test_name_map_places_flat_blocks_by_stage(timm_lite0: nn.Module) -> None:
    names = module_name_map(timm_lite0)
    # Stages hold 1, 2, 2, 3, 3, 4, 1 blocks: flat block 3 is stage 2's first, block 15 the last.
    assert names["_blocks.0._depthwise_conv"] == "blocks.0.0.conv_dw"
    assert names["_blocks.0._project_conv"] == "blocks.0.0.conv_pw"  # no expansion in block 0
    assert names["_blocks.0._bn1"] == "blocks.0.0.bn1"
    assert names["_blocks.1._expand_conv"] == "blocks.1.0.conv_pw"
    assert names["_blocks.1._bn0"] == "blocks.1.0.bn1"
    assert names["_blocks.1._bn1"] == "blocks.1.0.bn2"
    assert names["_blocks.2._bn2"] == "blocks.1.1.bn3"
    assert names["_blocks.3._depthwise_conv"] == "blocks.2.0.conv_dw"
    assert names["_blocks.15._project_conv"] == "blocks.6.0.conv_pwl"
    assert names["_conv_stem"] == "conv_stem" and names["_bn0"] == "bn1"
    assert names["_conv_head"] == "conv_head" and names["_bn1"] == "bn2" and names["_fc"] == "classifier"


def test_every_source_key_maps_to_exactly_one_timm_key_of_equal_shape(
    source_state_dict: dict[str, Tensor], timm_lite0: nn.Module
) -> None:
    names = module_name_map(timm_lite0)
    target = timm_lite0.state_dict()
    mapped: dict[str, str] = {}
    for key, tensor in source_state_dict.items():
        prefix, _, leaf = key.rpartition(".")
        new_key = f"{names[prefix]}.{leaf}"
        assert new_key in target, key
        assert tuple(target[new_key].shape) == tuple(tensor.shape), key
        mapped[key] = new_key
    assert len(set(mapped.values())) == len(mapped) == len(target) == len(source_state_dict)

    converted = convert_state_dict(source_state_dict, timm_lite0)
    assert set(converted) == set(target)
    assert converted["blocks.2.0.conv_dw.weight"] is source_state_dict["_blocks.3._depthwise_conv.weight"]
    assert converted["blocks.2.0.conv_dw.weight"].shape[-1] == 5  # the 5x5 stage landed on the 5x5 conv


def test_missing_key_is_named(source_state_dict: dict[str, Tensor], timm_lite0: nn.Module) -> None:
    broken = dict(source_state_dict)
    del broken["_blocks.5._bn1.running_var"]
    with pytest.raises(ModelLoadError, match=r"_blocks\.5\._bn1\.running_var") as info:
        convert_state_dict(broken, timm_lite0)
    assert "blocks.3.0.bn2.running_var" in str(info.value) and "missing" in str(info.value)


def test_wrong_shape_is_named(source_state_dict: dict[str, Tensor], timm_lite0: nn.Module) -> None:
    broken = dict(source_state_dict)
    broken["_conv_head.weight"] = torch.zeros(1280, 321, 1, 1)
    with pytest.raises(ModelLoadError, match=r"_conv_head\.weight \(1280, 321, 1, 1\)"):
        convert_state_dict(broken, timm_lite0)


def test_unexpected_key_is_named(source_state_dict: dict[str, Tensor], timm_lite0: nn.Module) -> None:
    broken = dict(source_state_dict)
    broken["_blocks.16._bn0.weight"] = torch.zeros(3)
    with pytest.raises(ModelLoadError, match=r"unexpected keys: _blocks\.16\._bn0\.weight"):
        convert_state_dict(broken, timm_lite0)


def test_untrained_default_has_random_weights() -> None:
    from saliscope.models import load_model

    model = load_model(pretrained=False)
    shipped = torch.load(weights_path(), map_location="cpu", weights_only=True)["_fc.weight"]
    assert not torch.equal(model.classifier.weight, shipped)
    assert not model.training
