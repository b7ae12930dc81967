"""A private, faster copy of a model for long runs of no-grad passes on inputs of one size.

Two rewrites, each exact up to float rounding for the input size the copy is made for:

- **Batch norms folded into convolutions.** In eval mode a batch norm after a convolution is a per-channel
  affine map: ``w' = w·γ/σ``, ``b' = (b − μ)·γ/σ + β`` (computed in float64), and the norm is removed —
  one memory pass less per conv layer.
- **"Same" padding made static.** TensorFlow-ported convolutions (timm's ``Conv2dSame``, in the default
  EfficientNet-Lite0) pad their input asymmetrically on every call; for one input size the padding is
  fixed, and an ordinary convolution with symmetric padding and a kernel shifted by zero taps computes the
  same values without copying the padded input. On a CPU the padded channels_last copy of a 112×112
  depthwise layer cost 7× the convolution itself.

Perturbation methods, Score-CAM and the faithfulness metrics run hundreds of forward passes per image, so
they run them on such a copy (``bench/bench_tricks.py`` section 7 measures it); the user's model is never
touched. Which norm follows which convolution, and the input size each convolution sees, are read off one
probe forward (a pair is folded only when the norm's input *is* the convolution's untouched output and
each module ran once), and the copy is checked against the model on that input: a model that also uses a
convolution's raw output elsewhere gives a different answer and is not rewritten. Anything unusual (nothing
to rewrite, a copy that cannot be made, a mismatch) falls back to the model itself.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cost import CostMeter
from .memory_layout import in_preferred_layout
from .model_state import hooks

# Runs of fewer passes use the model itself. Making the copy costs its two probe rows and the folding (0.11 s
# on the default model, where a forward row then costs 8.9 ms instead of 17.5 ms, and a gradient row about 1.5×
# less, on a 2-core CPU): it pays for itself within 13 forward rows. Every run decides by its own length alone,
# never by whether a copy is made already, so an input gets the same numbers whatever ran before.
FOLD_FROM_ROWS = 16
#: The one-row passes making a copy costs (counted in the run's cost): the model's and the copy's, on the probe.
PROBE_PASSES = 2
_NORM_TYPES = (nn.BatchNorm2d,)
# net -> (the state and input size it was made for, the copy or None when there was nothing to rewrite)
_COPIES: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[object, ...], nn.Module | None]] = weakref.WeakKeyDictionary()


def _state(net: nn.Module, probe: Tensor) -> tuple[object, ...]:
    # In-place updates (optimiser steps, load_state_dict, re-initialisation) bump a tensor's version; a
    # module switched to training mode must not get the copy that folded its running statistics.
    return (
        tuple(probe.shape[1:]),
        probe.dtype,
        probe.device,
        tuple(m.training for m in net.modules()),
        *((id(t), t.data_ptr(), t._version) for t in (*net.parameters(), *net.buffers())),
    )


def net_for_run(net: nn.Module, probe: Tensor, rows_per_image: int, meter: CostMeter | None = None) -> nn.Module:
    """The network a run of ``rows_per_image`` passes per image should use: ``net``'s inference copy
    (:func:`inference_net`) when the run is long enough to pay for making it (``FOLD_FROM_ROWS``), else ``net``.
    The run alone decides — not the batch, not whether a copy is made already — so an image gets the same
    numbers alone, in a batch and whatever ran before."""
    if rows_per_image < FOLD_FROM_ROWS:
        return net
    return inference_net(net, probe, meter)


def inference_net(net: nn.Module, probe: Tensor, meter: CostMeter | None = None) -> nn.Module:
    """``net``'s inference copy for no-grad passes on inputs shaped like ``probe`` (made once and kept while
    ``net``'s tensors and the input size are unchanged), or ``net`` itself when nothing can be rewritten.
    ``net`` must be in eval mode.

    ``probe`` is one input row of the run, on which the copy is checked against ``net``; its two passes
    are counted in ``meter``.
    """
    state = _state(net, probe)
    cached = _COPIES.get(net)
    if cached is not None and cached[0] == state:
        return cached[1] or net
    made = inference_copy(net, probe, meter)
    _COPIES[net] = (state, made)
    return made or net


def inference_copy(net: nn.Module, probe: Tensor, meter: CostMeter | None = None) -> nn.Module | None:
    """A copy of ``net`` (in eval mode) with its batch norms folded and "same" paddings made static for
    inputs shaped like ``probe``; None when there is nothing to rewrite or the copy does not match.

    A model with any module in training mode gets None before anything runs: its probe pass would update
    the norms' running statistics (the user's model changed) and its answers are not fixed functions."""
    if any(m.training for m in net.modules()):
        return None

    def run(module: nn.Module) -> Any:
        if meter is not None:
            meter.forward(int(probe.shape[0]))
        return in_preferred_layout(net, probe, module)

    names: dict[nn.Module, str] = {}
    shared: set[nn.Module] = set()  # registered under two names: which one runs is unknown, so left alone
    for name, module in net.named_modules(remove_duplicate=False):
        if module in names:
            shared.add(module)
        names[module] = name
    for module in shared:
        del names[module]
    if not any(isinstance(m, nn.Conv2d) for m in names):
        return None
    with torch.no_grad():
        plan, expected = _plan(net, names, run)
        if not plan.pairs and not plan.same_padding:
            return None
        try:
            faster = copy.deepcopy(net)
        except Exception:  # a model holding something that cannot be copied: run the model itself
            return None
        modules = dict(faster.named_modules())
        for conv_name, norm_name in plan.pairs:
            _fold_into(modules[conv_name], modules[norm_name])
            _replace(faster, norm_name, _after_norm(modules[norm_name]))
        for conv_name, size in plan.same_padding.items():
            _replace(faster, conv_name, _static_padding(modules[conv_name], size))
        got = run(faster)
    return faster if _same_output(expected, got) else None


@dataclass
class _Plan:
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (conv, norm) names to fold
    same_padding: dict[str, tuple[int, int]] = field(default_factory=dict)  # conv name -> its input's (H, W)


def _plan(net: nn.Module, names: dict[nn.Module, str], run: Callable[[nn.Module], Any]) -> tuple[_Plan, Any]:
    """What to rewrite, read off one forward pass of ``net``, and that pass's output."""
    convs = [m for m in names if isinstance(m, nn.Conv2d)]
    norms = [m for m in names if _foldable_norm(m)]
    calls: dict[nn.Module, int] = {}
    outputs: dict[nn.Module, tuple[Tensor, int]] = {}
    sizes: dict[nn.Module, tuple[int, int]] = {}
    fed_by: dict[nn.Module, nn.Module | None] = {}

    def record(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        calls[module] = calls.get(module, 0) + 1
        if module in outputs or module in fed_by:  # a second call: never rewritten
            return
        if isinstance(module, nn.Conv2d):
            outputs[module] = (output, output._version)  # an in-place op in between bumps the version
            if args and isinstance(args[0], Tensor) and args[0].ndim == 4:
                sizes[module] = (int(args[0].shape[-2]), int(args[0].shape[-1]))
        else:
            source = args[0] if args else None
            fed_by[module] = next(
                (c for c, (out, version) in outputs.items() if out is source and out._version == version), None
            )

    with hooks(convs + norms, record):
        output = run(net)
    plan = _Plan()
    plan.pairs = [
        (names[conv], names[norm])
        for norm, conv in fed_by.items()
        if conv is not None and calls.get(norm) == 1 and calls.get(conv) == 1
    ]
    plan.same_padding = {
        names[conv]: size
        for conv, size in sizes.items()
        if calls.get(conv) == 1 and isinstance(conv, nn.Conv2d) and _is_same_padding(conv)
    }
    return plan, output


def _foldable_norm(module: nn.Module) -> bool:
    if _is_frozen_norm(module):
        return True
    if not isinstance(module, _NORM_TYPES) or module.training or module.running_mean is None:
        return False
    # timm's BatchNormAct2d is a BatchNorm2d that also applies its dropout and activation afterwards.
    return type(module) is nn.BatchNorm2d or _is_norm_act(module)


def _is_frozen_norm(module: nn.Module) -> bool:
    """torchvision's ``FrozenBatchNorm2d`` (the backbones of its pretrained detectors): a batch norm whose
    statistics and affine parameters are buffers, the same map in training and eval mode."""
    return type(module).__name__ == "FrozenBatchNorm2d" and all(
        isinstance(getattr(module, name, None), Tensor) for name in ("weight", "bias", "running_mean", "running_var")
    )


def _is_norm_act(module: nn.Module) -> bool:
    return type(module).__name__ == "BatchNormAct2d" and hasattr(module, "act") and hasattr(module, "drop")


def _is_same_padding(conv: nn.Conv2d) -> bool:
    """timm's ``Conv2dSame``: TensorFlow's "SAME" padding, worked out from the input size on every call."""
    return type(conv).__name__ == "Conv2dSame" and tuple(conv.dilation) == (1, 1) and conv.padding_mode == "zeros"


def _fold_into(conv: nn.Conv2d, norm: Any) -> None:
    assert isinstance(norm.running_mean, Tensor) and isinstance(norm.running_var, Tensor)
    # Folded in float64 then cast: the copy's rounding stays at the level of the model's own.
    wide = torch.float64 if norm.running_var.device.type != "mps" else torch.float32
    scale = torch.rsqrt(norm.running_var.to(wide) + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.to(wide)
    shift = -norm.running_mean.to(wide) * scale
    if norm.bias is not None:
        shift = shift + norm.bias.to(wide)
    if conv.bias is not None:
        shift = shift + conv.bias.to(wide) * scale
    weight = conv.weight.to(wide) * scale.view(-1, *([1] * (conv.weight.ndim - 1)))
    conv.weight.copy_(weight.to(conv.weight.dtype))
    conv.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)


def _static_padding(conv: nn.Conv2d, size: tuple[int, int]) -> nn.Conv2d:
    """An ordinary convolution equal to ``conv``'s "SAME" padding on ``size`` inputs: symmetric padding
    ``p = max(before, after)`` per side, the kernel padded with ``p − before`` zero taps in front and
    ``p − after`` behind, so every output still reads exactly the pixels (and zeros) it read before."""
    before, after = [], []
    for n, k, s in zip(size, conv.kernel_size, conv.stride, strict=True):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    p = [max(b, a) for b, a in zip(before, after, strict=True)]
    weight = F.pad(conv.weight, (p[1] - before[1], p[1] - after[1], p[0] - before[0], p[0] - after[0]))
    static = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        (weight.shape[-2], weight.shape[-1]),
        stride=(conv.stride[0], conv.stride[1]),
        padding=(p[0], p[1]),
        groups=conv.groups,
        bias=conv.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    static.weight = nn.Parameter(weight, requires_grad=False)
    if conv.bias is not None:
        static.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)
    return static.train(conv.training)


def _after_norm(norm: nn.Module) -> nn.Module:
    """What remains of a folded norm: nothing, or timm's dropout + activation."""
    if _is_norm_act(norm):
        return nn.Sequential(cast(nn.Module, norm.drop), cast(nn.Module, norm.act))
    return nn.Identity()


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def _same_output(expected: Any, got: Any) -> bool:
    if isinstance(expected, Tensor) and isinstance(got, Tensor):
        if expected.shape != got.shape:
            return False
        if not expected.is_floating_point():  # a detector's labels: equal or not the same answer
            return expected.dtype == got.dtype and torch.equal(expected, got)
        scale = float(expected.abs().max()) if expected.numel() else 0.0
        tolerance = 1e-4 * scale + 1e-5 if expected.dtype != torch.float64 else 1e-9 * scale + 1e-12
        return bool(torch.isfinite(got).all()) and float((expected - got).abs().max()) <= tolerance
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(_same_output(expected[k], got[k]) for k in expected)
    if isinstance(expected, (tuple, list)) and isinstance(got, (tuple, list)):
        return len(expected) == len(got) and all(_same_output(a, b) for a, b in zip(expected, got, strict=True))
    return False
