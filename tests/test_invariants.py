"""DESIGN.md's invariants, checked for every registered method (and any added later)."""

from __future__ import annotations

import copy

import pytest
import torch
from model_snapshot import assert_same, snapshot
from tiny_models import SmallCNN, TinyViT

import saliscope as ss
from saliscope import registry
from saliscope.core.errors import ModelOutputError, NonFiniteError, TargetError
from saliscope.core.targets import BoundClasses
from saliscope.registry import MethodOptions

OPTIONS = MethodOptions(seed=3, n_samples=3, n_steps=4, baseline="zero")
# Methods for detectors only (D-RISE) have the same checks on a detector: tests/methods/test_detection_invariants.py.
METHODS = [name for name in registry.available() if not registry.get(name).needs_detector]


def build(name, model, **overrides):
    return registry.create(name, model, MethodOptions(**{**OPTIONS.__dict__, **overrides}))


def tiny(name):
    """The tiny model a method applies to: a CNN, or a ViT for attention methods."""
    return TinyViT() if registry.get(name).needs_attention else SmallCNN()


class Wrapped(torch.nn.Module):
    """Base for models built around a tiny model: ``forward`` calls ``self.net``."""

    def __init__(self, name):
        super().__init__()
        self.net = tiny(name)
        self.patch_embed = getattr(self.net, "patch_embed", None)

    def forward(self, x):
        return self.net(x)


def awkward_model(name="gradient"):
    """Train mode with one submodule in eval, one frozen parameter, one stale .grad: all must survive."""
    model = tiny(name)
    model.train()
    modules = [m for m in model.modules() if list(m.parameters(recurse=False))]
    modules[1].eval()
    params = list(model.parameters())
    params[1].requires_grad_(False)
    params[-1].grad = torch.full_like(params[-1], 7.0)
    return model


@pytest.mark.parametrize("name", METHODS)
def test_model_and_input_left_exactly_as_found(name, batch):
    model = awkward_model(name)
    before = snapshot(model)
    x = batch.clone()
    e = build(name, model).explain(x, target=1)
    assert_same(before, snapshot(model))
    assert torch.equal(x, batch) and not x.requires_grad and x.grad is None
    assert e.attributions.shape[0] == 3 and e.attributions.shape[-2:] == x.shape[-2:]
    assert e.method == name


class ExplodingTarget(BoundClasses):
    """Scores normally for ``calls`` calls, then raises: a failure half-way through a method."""

    def __init__(self, calls):
        super().__init__(torch.tensor([1, 1, 1]))
        object.__setattr__(self, "budget", [calls])

    def take(self, rows):
        return self  # keep the shared budget across chunks

    def __call__(self, output):
        self.budget[0] -= 1
        if self.budget[0] < 0:
            raise RuntimeError("boom")
        return output[:, 1]


@pytest.mark.parametrize("name", METHODS)
def test_model_left_as_found_when_the_target_raises_half_way(name, batch):
    model = awkward_model(name)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        build(name, model, chunk_size=1).explain(batch, target=ExplodingTarget(calls=1))
    assert_same(before, snapshot(model))


@pytest.mark.parametrize("name", METHODS)
def test_a_failed_call_leaves_no_torch_mode_or_saved_tensor_hook_behind(name, batch):
    """The first chunk is measured under a torch mode or saved-tensor hooks held open across a generator's yield;
    an error in it must not leave them on torch's stacks while the error (and its traceback) is kept."""
    kept = None
    try:
        build(name, awkward_model(name)).explain(batch, target=ExplodingTarget(calls=0))  # fails in the first chunk
    except RuntimeError as exc:
        kept = exc  # as a notebook keeps the last error
    assert kept is not None and kept.__traceback__ is not None
    assert torch._C._len_torch_function_stack() == 0
    assert torch._C._autograd._top_saved_tensors_default_hooks(True) is None


class FailingModel(Wrapped):
    def __init__(self, name, after):
        super().__init__(name)
        self.after = after

    def forward(self, x):
        self.after -= 1
        if self.after < 0:
            raise RuntimeError("model failed")
        return super().forward(x)


@pytest.mark.parametrize("name", METHODS)
def test_model_left_as_found_when_the_model_raises_half_way(name, batch):
    model = FailingModel(name, after=2).train()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="model failed"):
        build(name, model, chunk_size=1).explain(batch, target=0)
    assert_same(before, snapshot(model))


@pytest.mark.parametrize("name", METHODS)
def test_batched_equals_alone_and_seed_is_deterministic(name, batch):
    model = tiny(name).eval()
    together = build(name, model).explain(batch, target=[0, 2, 3]).attributions
    for i, k in enumerate([0, 2, 3]):
        alone = build(name, model).explain(batch[i : i + 1], target=k).attributions
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-4, atol=1e-6)
    again = build(name, model).explain(batch, target=[0, 2, 3]).attributions
    assert torch.equal(together, again)


@pytest.mark.parametrize("name", METHODS)
def test_half_precision_model_is_explained_in_float32_and_left_half(name, batch):
    model = tiny(name).eval()
    half = copy.deepcopy(model).to(torch.bfloat16)
    e = build(name, half).explain(batch.to(torch.bfloat16), target=1)
    assert e.attributions.dtype == torch.float32
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    reference = build(name, model).explain(batch.to(torch.bfloat16).float(), target=1).attributions
    # the float32 copy of bfloat16 weights: close to, not equal to, the float32 model
    assert torch.nn.functional.cosine_similarity(e.attributions.flatten(), reference.flatten(), dim=0) > 0.95


def test_converted_copy_follows_weight_changes_between_calls(batch):
    half = SmallCNN().eval().to(torch.bfloat16)
    explainer = ss.Gradient(half)
    before = explainer.explain(batch.to(torch.bfloat16), target=1).attributions
    with torch.no_grad():
        half.fc.weight.mul_(-1)  # the user fine-tunes between calls
    after = explainer.explain(batch.to(torch.bfloat16), target=1).attributions
    fresh = ss.Gradient(half).explain(batch.to(torch.bfloat16), target=1).attributions
    torch.testing.assert_close(after, fresh)  # equal up to the rounding of different chunkings
    torch.testing.assert_close(after, -before)  # the gradient is linear in the last layer's weights


def test_clean_forwards_are_chunked_like_the_method(cnn, batch):
    calls = []
    hook = cnn.register_forward_hook(lambda module, args, out: calls.append(int(args[0].shape[0])))
    try:
        e = ss.IntegratedGradients(cnn, n_steps=4, chunk_size=2).explain(batch)  # predicted class: one clean forward
    finally:
        hook.remove()
    assert max(calls) == 2
    # 3 images: the predicted-class forward (3) + 12 path points + input and baseline forwards (6)
    assert sum(calls) == e.cost.forward_passes == 3 + 12 + 6


@pytest.mark.parametrize("name", METHODS)
def test_float64_on_request(name, batch):
    e = build(name, tiny(name).eval(), precision="float64").explain(batch, target=0)
    assert e.attributions.dtype == torch.float64
    single = build(name, tiny(name).eval()).explain(batch, target=0)  # same seed, same noise, float32
    torch.testing.assert_close(e.attributions.float(), single.attributions, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", METHODS)
def test_class_out_of_range_is_a_clear_error(name, batch):
    with pytest.raises(TargetError, match="out of range: the model has 4 classes"):
        build(name, tiny(name).eval()).explain(batch, target=4)


class DictModel(Wrapped):
    """Hugging Face's shape of output: a mapping with 'logits' beside other tensors."""

    def forward(self, x):
        scores = self.net(x)
        return {"logits": scores, "pooled": scores.detach() * 0 + 1}


class TupleModel(Wrapped):
    """A tuple with exactly one (batch, classes) tensor and a 4-D feature map."""

    def forward(self, x):
        return (x.mean(1, keepdim=True), self.net(x))


class AmbiguousModel(Wrapped):
    def forward(self, x):
        scores = self.net(x)
        return {"a": scores, "b": -scores}


@pytest.mark.parametrize("name", METHODS)
def test_scores_are_read_from_a_mapping_or_tuple_and_the_entry_is_recorded(name, batch):
    plain = build(name, tiny(name).eval()).explain(batch, target=1)
    for wrapper, entry in ((DictModel, "logits"), (TupleModel, 1)):
        e = build(name, wrapper(name).eval()).explain(batch, target=1)
        torch.testing.assert_close(e.attributions, plain.attributions)
        assert e.params["output"] == entry and "output" not in plain.params


@pytest.mark.parametrize("name", METHODS)
def test_an_ambiguous_output_is_a_clear_error_listing_its_entries(name, batch):
    with pytest.raises(ModelOutputError, match=r"several \(batch, num_classes\) tensors.*'a' \(\d×4\), 'b'"):
        build(name, AmbiguousModel(name).eval()).explain(batch, target=0)


class NaNModel(Wrapped):
    def forward(self, x):
        return self.net(x) * float("nan")


@pytest.mark.parametrize("name", METHODS)
def test_nan_scores_are_reported(name, batch):
    with pytest.raises(NonFiniteError, match="NaN"):
        build(name, NaNModel(name).eval()).explain(batch, target=0)


def test_unbatched_and_non_float_inputs_are_clear_errors(cnn):
    with pytest.raises(ss.SaliscopeError, match="unsqueeze"):
        ss.Gradient(cnn).explain(torch.randn(3, 8, 8), target=0)
    with pytest.raises(ss.SaliscopeError, match="floating"):
        ss.Gradient(cnn).explain(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), target=0)
