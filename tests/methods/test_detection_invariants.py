"""DESIGN.md's invariants for every registered method on a detector: one map per image, the model left exactly
as found (also when the target or the model raises half-way), batched equal to alone, float64 on request."""

from __future__ import annotations

import copy

import pytest
import torch
from detection_models import LO, SIZE, PatchDetector, patch_images
from model_snapshot import assert_same, snapshot

import saliscope as ss
from saliscope import registry
from saliscope.core.detection_targets import BoundDetections
from saliscope.registry import MethodOptions

OPTIONS = MethodOptions(seed=3, n_samples=3, n_steps=4, baseline="zero", n_perturbations=16, n_superpixels=8, window=8)
METHODS = [name for name in registry.available() if not registry.get(name).needs_attention]


def build(name, model, **overrides):
    return registry.create(name, model, MethodOptions(**{**OPTIONS.__dict__, **overrides}))


def images(n: int = 3) -> torch.Tensor:
    """Three different images, each with its patch (so each has its detection)."""
    x = patch_images(n, seed=4)
    x[:, 0, LO + 2 : LO + 6, LO + 2 : LO + 6] = torch.tensor([0.9, 0.7, 0.8][:n]).view(n, 1, 1)
    return x


def awkward_detector() -> PatchDetector:
    """Training mode with one submodule in eval, one frozen parameter, one stale .grad: all must survive."""
    model = PatchDetector().train()
    model.features.eval()
    model.head.bias.requires_grad_(False)
    model.head.weight.grad = torch.full_like(model.head.weight, 7.0)
    return model


@pytest.mark.parametrize("name", METHODS)
def test_one_map_per_image_and_the_model_left_exactly_as_found(name):
    model = awkward_detector()
    before = snapshot(model)
    x = images()
    given = x.clone()
    e = build(name, model).explain(x, target=ss.DetectionTarget(0))
    assert_same(before, snapshot(model))
    assert torch.equal(x, given) and not x.requires_grad
    assert e.attributions.shape[0] == 3 and e.attributions.shape[-2:] == (SIZE, SIZE)
    assert torch.isfinite(e.attributions).all()


class ExplodingDetections(BoundDetections):
    """Scores (or hands out rows) normally for ``calls`` calls, then raises: a failure half-way through a method.
    D-RISE reads the reference detection through ``take`` and never calls it, so both count."""

    def __init__(self, calls: int, rows: int = 3, budget: list[int] | None = None) -> None:
        super().__init__(torch.tensor([[4.0, 4.0, 28.0, 28.0]] * rows), torch.ones(rows, dtype=torch.long))
        object.__setattr__(self, "budget", [calls] if budget is None else budget)

    def take(self, rows):
        self._spend()
        return ExplodingDetections(0, len(rows), self.budget)  # the rows asked for, the budget shared

    def _spend(self) -> None:
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise RuntimeError("boom")

    def __call__(self, output):
        self._spend()
        return BoundDetections(self.boxes, self.labels)(output)


@pytest.mark.parametrize("name", METHODS)
def test_model_left_as_found_when_the_target_raises_half_way(name):
    model = awkward_detector()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        build(name, model, chunk_size=1).explain(images(), target=ExplodingDetections(calls=1))
    assert_same(before, snapshot(model))


class FailingDetector(PatchDetector):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after

    def forward(self, images):
        self.after -= 1
        if self.after < 0:
            raise RuntimeError("model failed")
        return super().forward(images)


@pytest.mark.parametrize("name", METHODS)
def test_model_left_as_found_when_the_model_raises_half_way(name):
    model = FailingDetector(after=2).train()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="model failed"):
        build(name, model, chunk_size=1).explain(images(), target=ss.DetectionTarget(0))
    assert_same(before, snapshot(model))


@pytest.mark.parametrize("name", METHODS)
def test_batched_equals_alone_and_seed_is_deterministic(name):
    model = PatchDetector().eval()
    x = images()
    together = build(name, model).explain(x, target=ss.DetectionTarget(0)).attributions
    for i in range(3):
        alone = build(name, model).explain(x[i : i + 1], target=ss.DetectionTarget(0)).attributions
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-4, atol=1e-6)
    again = build(name, model).explain(x, target=ss.DetectionTarget(0)).attributions
    assert torch.equal(together, again)


@pytest.mark.parametrize("name", METHODS)
def test_float64_on_request_and_bfloat16_in_float32(name):
    model = PatchDetector().eval()
    x = images()
    e = build(name, model, precision="float64").explain(x, target=ss.DetectionTarget(0))
    assert e.attributions.dtype == torch.float64
    single = build(name, model).explain(x, target=ss.DetectionTarget(0))
    torch.testing.assert_close(e.attributions.float(), single.attributions, rtol=1e-4, atol=1e-5)
    half = copy.deepcopy(model).to(torch.bfloat16)
    low = build(name, half).explain(x.to(torch.bfloat16), target=ss.DetectionTarget(0))
    assert low.attributions.dtype == torch.float32 and all(p.dtype == torch.bfloat16 for p in half.parameters())
