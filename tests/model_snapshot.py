"""A model's whole state — modes, requires_grad, .grad, parameters and buffers, hooks — to check that a
method left it exactly as it found it (DESIGN.md, invariant 1)."""

from __future__ import annotations

import torch
from torch import nn


def snapshot(model: nn.Module) -> dict:
    return {
        "training": [(n, m.training) for n, m in model.named_modules()],
        "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "grads": [(n, None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "hooks": [
            (n, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for n, m in model.named_modules()
        ],
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
    # The same parameters and buffers, none added or dropped (zip below would skip a missing one).
    assert [n for n, _ in before["grads"]] == [n for n, _ in after["grads"]]
    assert before["state"].keys() == after["state"].keys()
    for (n, g0), (_, g1) in zip(before["grads"], after["grads"], strict=True):
        assert (g0 is None) == (g1 is None), n
        if g0 is not None:
            assert torch.equal(g0, g1), n
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k
