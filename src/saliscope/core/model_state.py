"""Leave the model exactly as we found it.

Every method runs inside :func:`explaining`: the model is put in eval mode with its parameters frozen
(so autograd neither builds weight-gradient paths nor saves tensors for them), and on the way out — also
when the method raised half-way — every module's ``training`` flag and every parameter's
``requires_grad`` are put back. Hooks live only inside :func:`hooks`, which removes them in ``finally``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


@contextmanager
def explaining(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the duration of the block; restored in ``finally``.

    Only what has to change is touched (modules still in training mode, parameters still requiring
    grad), and exactly those are put back: cheap when the model is already in eval mode, and correct
    when blocks nest on the same model.
    """
    modules = list(model.modules())
    modes = [(m, m.training) for m in modules]
    switch = any(was_training for _, was_training in modes)
    # One walk over the modules serves both lists (parameters() would walk them again); a parameter
    # shared by two modules appears twice, which is harmless for set-and-restore.
    live = [p for m in modules for p in m._parameters.values() if p is not None and p.requires_grad]
    try:
        if switch:
            model.eval()  # through eval(), so a model that overrides train() gets its own eval mode
        for p in live:
            p.requires_grad_(False)
        yield model
    finally:
        if switch:
            for m, was_training in modes:
                if m.training != was_training:
                    m.training = was_training
        for p in live:
            p.requires_grad_(True)


ForwardHook = Callable[[nn.Module, tuple[Any, ...], Any], Any]


@contextmanager
def hooks(modules: Iterable[nn.Module], forward_hook: ForwardHook) -> Iterator[list[RemovableHandle]]:
    """Register ``forward_hook`` on each module for the duration of the block; removed in ``finally``."""
    handles: list[RemovableHandle] = []
    try:
        for module in modules:
            handles.append(module.register_forward_hook(forward_hook))
        yield handles
    finally:
        for handle in handles:
            handle.remove()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The floating dtype of the model's first floating parameter, or None."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return None
