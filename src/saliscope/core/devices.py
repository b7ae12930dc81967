"""Which device a user asked for, checked once with a message that names the fix."""

from __future__ import annotations

import torch

from .errors import InputError, SaliscopeError


def check_device(
    device: str | torch.device, *, name: str = "device", error: type[SaliscopeError] = InputError
) -> torch.device:
    """``device`` as a ``torch.device`` that exists on this machine, or one clear ``error``.

    ``name`` is how the caller spells the setting in messages (``"--device"`` on the command line).
    """
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise error(f"unknown device {str(device)!r}", f"use {name} cpu or {name} cuda") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise error(f"{name} {device} was asked for but no CUDA GPU is available", f"use {name} cpu")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise error(
                f"{name} {device} was asked for but this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})",
                f"use {name} cuda:0, or {name} cpu",
            )
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise error(f"{name} {device} was asked for but MPS is not available", f"use {name} cpu")
    elif parsed.type != "cpu":
        backend = getattr(torch, parsed.type, None)  # torch.xpu and other accelerator back-ends
        is_available = getattr(backend, "is_available", None)
        if not callable(is_available):
            raise error(f"{name} {device} cannot run a model", f"use {name} cpu or {name} cuda")
        if not is_available():
            raise error(f"{name} {device} was asked for but it is not available", f"use {name} cpu")
    return parsed
