"""Models and explainers for the scale-out tests. They live in a module of their own because Ray workers
unpickle them: a worker imports this module (the tests put its folder on the workers' PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from audit_models import PatchReader

HERE = Path(__file__).parent
IMPORTS = [str(HERE.parents[1] / "src"), str(HERE.parent), str(HERE.parent / "audit"), str(HERE)]


def worker_env() -> dict[str, str]:
    """The environment for a Ray driver or a saliscope subprocess that must import the tests' helpers."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*IMPORTS, *filter(None, [env.get("PYTHONPATH")])])
    return env


class SlowReader(PatchReader):
    """A PatchReader that takes ``delay`` seconds per forward pass: a run long enough to interrupt."""

    def __init__(self, delay: float = 0.25) -> None:
        super().__init__()
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return super().forward(x)


class KillOnce:
    """Behaves like ``inner``, except that the worker process making the ``at``-th call (counted per process)
    kills itself with SIGKILL in the middle of it — once per ``marker`` file, which records the killed pid."""

    def __init__(self, inner: Any, marker: Path, at: int) -> None:
        self.inner, self.marker, self.at = inner, Path(marker), at
        self.name, self.model = inner.name, inner.model
        self.calls = 0

    def params(self) -> dict[str, Any]:
        return self.inner.params()

    def explain(self, x: torch.Tensor, target: Any = None) -> Any:
        self.calls += 1
        if self.calls == self.at:
            try:
                with open(self.marker, "x") as handle:  # the first process to get here, and only it
                    handle.write(str(os.getpid()))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.explain(x, target)


class KillAlways:
    """Kills its worker process on every call after the first (a batch no worker survives)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.model, self.calls = inner, inner.name, inner.model, 0

    def params(self) -> dict[str, Any]:
        return self.inner.params()

    def explain(self, x: torch.Tensor, target: Any = None) -> Any:
        self.calls += 1
        if self.calls >= 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.explain(x, target)
