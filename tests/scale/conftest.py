"""Scale-out fixtures: one local Ray instance for every in-process Ray test of the session.

Starting Ray takes seconds (10 s on a loaded 2-CPU machine), so the instance is shared: the Ray engine
uses an instance it finds already initialised and leaves it running. Tests that check how the engine
starts and stops its own instance run the command line in a subprocess instead.

The instance has 2 CPUs, like the machine the suite runs on in CI: the sizing that keeps the actor pool from
starving the readers is exercised for real. Workers import the tests' helper modules (pickled models and
explainers) through PYTHONPATH.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path[:0] = [p for p in (str(HERE.parent / "audit"), str(HERE)) if p not in sys.path]  # the helper modules

from scale_models import worker_env  # noqa: E402  (needs the path above)


@pytest.fixture(scope="session")
def ray_instance() -> Iterator[None]:
    """A local Ray instance with 2 CPUs for the whole session (shut down at its end)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = worker_env()["PYTHONPATH"]  # the raylet, and so every worker, inherits it
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before
    yield
    ray.shutdown()
