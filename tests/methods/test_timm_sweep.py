"""Any timm architecture: Gradient, Grad-CAM with its automatic layer and (for global-attention ViTs) attention
rollout each give a finite, non-flat map at input size on the predicted class, every other model's rollout is
refused with its architecture's reason, and the model is left exactly as found. Each architecture runs at its
own default input size, with random weights and nothing left at zero (see ``timm_sweep.build``)."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
from model_snapshot import assert_same, snapshot
from timm_sweep import ARCHITECTURES, Arch, build, input_size

import saliscope as ss
from saliscope.core.errors import MethodError
from saliscope.core.views import FlatMapWarning

pytestmark = pytest.mark.sweep


def assert_real_map(e: ss.Explanation, shape: tuple[int, ...], what: str) -> None:
    a = e.attributions
    assert tuple(a.shape) == shape, what
    assert bool(torch.isfinite(a).all()), what
    spread = float(a.max() - a.min())
    assert spread > 1e-6 * max(float(a.abs().max()), 1e-30), f"{what}: flat map"


def test_the_sweep_covers_every_family_with_sixty_architectures() -> None:
    assert len({a.name for a in ARCHITECTURES}) == len(ARCHITECTURES) >= 60
    assert len({a.family for a in ARCHITECTURES}) == 9
    assert sum(a.rollout is None for a in ARCHITECTURES) >= 10


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.name)
def test_architecture(arch: Arch) -> None:
    model = build(arch.name)
    h, w = input_size(model)
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(1))
    before = snapshot(model)
    grad = ss.Gradient(model).explain(x)
    assert_real_map(grad, (1, 3, h, w), "Gradient")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FlatMapWarning)
        cam = ss.GradCAM(model).explain(x)
    if any("only against it" in str(w.message) for w in caught):
        # A random model whose layer holds only evidence against the class (LeViT: its attention-downsampling
        # averages the tokens at random init): the positive map is rightly empty, and saliscope says so. The
        # layer is still the right one when its signed map has structure.
        cam = ss.GradCAM(model, evidence="signed").explain(x)
    assert_real_map(cam, (1, 1, h, w), f"GradCAM at {cam.params['layer']}")
    assert torch.equal(cam.target.classes, grad.target.classes)  # both explain the predicted class
    if arch.rollout is None:
        assert_real_map(ss.AttentionRollout(model).explain(x), (1, 1, h, w), "AttentionRollout")
    else:
        with pytest.raises(MethodError, match=re.escape(arch.rollout)) as refused:
            ss.AttentionRollout(model).explain(x)
        assert "GradCAM" in refused.value.fix and "gradcam" in str(refused.value.cli_fix)
    assert_same(before, snapshot(model))
