"""No silent degenerate maps: too few superpixels are made again, a 1×1 CAM layer and an all-negative CAM
say so and name the fix."""

from __future__ import annotations

import warnings

import pytest
import torch
from perturbation_models import SuperpixelAdditive
from torch import nn

import saliscope as ss
from saliscope.core.errors import MethodError
from saliscope.core.views import FlatMapWarning
from saliscope.methods.perturbation.superpixels import segment, superpixels


def noise(n: int = 1, side: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class Pixels(nn.Module):
    """A score that reads every pixel with its own weight: any partition gives a map that varies."""

    def __init__(self, side: int = 64) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.weight = nn.Parameter(torch.randn(2, 3 * side * side, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T


def test_slic_makes_one_superpixel_of_noise_and_segment_makes_it_again():
    x = noise()
    assert superpixels(x, "slic", n_segments=50)[1] == [1]  # what LIME would silently have used
    with pytest.warns(UserWarning, match=r"fewer than a quarter of the 50 superpixels.*image 0: 1, made again by"):
        made = segment(x, "slic", n_segments=50)
    assert made.counts[0] >= 13 and made.used[0].startswith("slic(compactness=")
    assert int(made.labels.max()) + 1 == made.counts[0]


@pytest.mark.parametrize("cls", [ss.LIME, ss.KernelSHAP])
def test_lime_and_kernel_shap_on_a_noise_image_give_a_map_that_varies_and_record_the_fallback(cls):
    x = noise(2)
    with pytest.warns(UserWarning, match="made again"):
        e = cls(Pixels(), n_samples=200, n_superpixels=50, seed=0).explain(x, target=0)
    for i in range(2):
        assert e.attributions[i].unique().numel() >= 13  # one value per superpixel, and there are many
        assert e.params["segmentation"][i].startswith("slic(compactness=")
        assert e.params["superpixels_found"][i] == int(e.extras["superpixels"][i].max()) + 1
    # The warning comes once per call, whatever the number of images.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cls(Pixels(), n_samples=20, n_superpixels=50, seed=0).explain(noise(3), target=0)
    assert sum("made again" in str(w.message) for w in caught) == 1


def test_the_grid_is_the_last_resort_and_a_natural_image_is_left_alone(monkeypatch):
    # Where SLIC finds one region at every compactness, the grid's cells are what is left.
    from saliscope.methods.perturbation import superpixels as module

    tried = []

    def one_region(image, segmenter, n_segments, compactness):
        tried.append(compactness)
        return module.np.zeros(image.shape[:2], dtype=int)

    monkeypatch.setattr(module, "_segment", one_region)
    with pytest.warns(UserWarning, match="made again by grid: 36"):
        made = segment(noise(1, side=48), "slic", n_segments=36)
    assert made.used == ["grid"] and made.counts == [36] and tried == [10.0, 100.0, 1000.0]
    monkeypatch.undo()
    from skimage import data
    from skimage.transform import resize

    cat = torch.from_numpy(resize(data.chelsea(), (64, 96), anti_aliasing=True)).permute(2, 0, 1).float()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        natural = segment(cat.unsqueeze(0), "slic", n_segments=30)
    assert natural.used == ["slic"] and natural.counts[0] >= 8


def test_a_function_of_ones_own_is_kept_and_only_a_single_region_is_warned_about():
    x = noise(1, side=12)
    six = torch.arange(144).view(12, 12) // 24
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = segment(x, lambda t: six, n_segments=50)
    assert kept.counts == [6] and kept.used == ["custom"]
    with pytest.warns(UserWarning, match="one region"):
        one = segment(x, lambda t: torch.zeros(12, 12, dtype=torch.long), n_segments=50)
    assert one.counts == [1]
    model = SuperpixelAdditive(six, torch.arange(6.0)).eval()
    e = ss.KernelSHAP(model, n_samples=64, superpixels=lambda t: six, seed=0).explain(x, target=0)
    assert e.params["segmentation"] == ["custom"]


class Pooled(nn.Module):
    """conv → global pool (kept 4-D: (N, C, 1, 1)) → linear: the pooled layer is a 1×1 grid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def test_a_one_by_one_cam_layer_names_the_fix():
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(MethodError, match=r"layer 'pool'.*1×1 grid.*flat map.*use one of the spatial layers: conv"):
        ss.GradCAM(Pooled().eval(), layer="pool").explain(x, target=0)
    # A network whose every map shrinks to 1×1 at this input size: feed a larger image.
    tiny = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(MethodError, match=r"deepest maps are 1×1.*larger image"):
        ss.GradCAM(tiny.eval()).explain(torch.randn(1, 3, 4, 4), target=0)


class AllAgainst(nn.Module):
    """A positive feature map whose every channel lowers class 0: Grad-CAM's positive map is zero everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.features.weight.fill_(0.5)
            self.features.bias.fill_(3.0)
            self.fc.weight.copy_(torch.tensor([[-1.0, -2.0], [1.0, 1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.features(x)).mean((2, 3)))


def test_a_cam_whose_evidence_is_all_against_the_class_says_how_to_see_it():
    model, x = AllAgainst().eval(), torch.rand(2, 3, 6, 6)
    with pytest.warns(FlatMapWarning, match=r"image\(s\) \[0, 1\].*evidence='negative'.*--evidence signed"):
        e = ss.GradCAM(model, layer="features").explain(x, target=0)
    assert float(e.attributions.abs().max()) == 0.0
    negative = ss.GradCAM(model, layer="features", evidence="negative").explain(x, target=0)
    assert float(negative.attributions.min()) < 0  # the evidence the positive map dropped
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlatMapWarning)
        ss.GradCAM(model, layer="features").explain(x, target=1)  # evidence for class 1: no warning


def test_an_occlusion_window_larger_than_the_image_names_the_option():
    with pytest.raises(ss.SaliscopeError, match="larger than the image") as caught:
        ss.Occlusion(Pixels(side=8), window=12).explain(noise(1, side=8), target=0)
    assert "--window" in caught.value.cli_message()
