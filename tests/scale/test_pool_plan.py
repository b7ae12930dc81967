"""Sizing the Ray actor pool: the actors never take the CPUs the image readers need (on 2 CPUs, 2 workers
of 1 CPU each would wait forever for images no task can read), and impossible requests fail in one line."""

from __future__ import annotations

import pytest

from saliscope.audit.engines import EngineError, RayOptions
from saliscope.audit.engines.pool import READ_CPUS, Pool, plan_pool


def plan(cpus: float, gpus: float = 0.0, batches: int = 100, **options: object) -> Pool:
    return plan_pool(RayOptions(**options), cpus=cpus, gpus=gpus, batches=batches)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cpus", "gpus", "options", "expected"),
    [
        # No GPU: one CPU per worker, as many as fit once the readers' share is set aside.
        (2, 0, {}, Pool(1, 1.0, 0.0, 1)),
        (16, 0, {}, Pool(15, 1.0, 0.0, 1)),
        (16, 0, {"cpus_per_worker": 4}, Pool(3, 4.0, 0.0, 4)),
        # A worker count alone splits the free CPUs (at most one each): 2 workers on 2 CPUs get 0.75 each.
        (2, 0, {"workers": 2}, Pool(2, 0.75, 0.0, 1)),
        (2, 0, {"workers": 3}, Pool(3, 0.5, 0.0, 1)),
        (2, 0, {"workers": 6}, Pool(6, 0.25, 0.0, 1)),
        (2, 0, {"workers": 40, "cpus_per_worker": 0.03}, Pool(40, 0.03, 0.0, 1)),  # asked for: given
        (8, 0, {"workers": 2}, Pool(2, 1.0, 0.0, 1)),
        # GPUs: one worker per GPU, each with a CPU; fractions share a GPU.
        (16, 4, {}, Pool(4, 1.0, 1.0, 1)),
        (16, 2, {"gpus_per_worker": 0.5}, Pool(4, 1.0, 0.5, 1)),
        (2, 1, {}, Pool(1, 1.0, 1.0, 1)),
        (16, 4, {"gpus_per_worker": 0}, Pool(15, 1.0, 0.0, 1)),
        (16, 1, {"gpus_per_worker": 1, "cpus_per_worker": 0}, Pool(1, 0.0, 1.0, 1)),
    ],
)
def test_the_pool_leaves_the_readers_their_share(cpus: float, gpus: float, options: dict, expected: Pool) -> None:
    pool = plan(cpus, gpus, **options)
    assert pool == expected
    assert pool.workers * pool.cpus <= cpus - READ_CPUS


def test_never_more_workers_than_batches() -> None:
    assert plan(16, batches=3).workers == 3
    assert plan(16, 4, batches=1).workers == 1


@pytest.mark.parametrize(
    ("cpus", "gpus", "options", "message", "cli_fix"),
    [
        (2, 0, {"workers": 2, "cpus_per_worker": 1}, "2 workers × 1 CPUs leave no CPU for reading", "0.75"),
        (2, 0, {"cpus_per_worker": 2}, "1 workers × 2 CPUs leave no CPU for reading", "--cpus-per-worker 1.5"),
        (2, 0, {"workers": 40}, "40 workers do not fit on a Ray cluster of 2 CPUs", "--workers 6 or fewer"),
        (0.5, 0, {}, "the Ray cluster has 0.5 CPUs: too few", "--engine local"),
        (8, 0, {"gpus_per_worker": 1}, "each worker asks for 1 GPU, and the Ray cluster has 0 GPUs", "--ray-address"),
        (8, 2, {"workers": 3}, "3 workers × 1 GPUs need more than the Ray cluster's 2 GPUs", "--workers 2"),
    ],
)
def test_requests_that_cannot_fit_fail_in_one_line(
    cpus: float, gpus: float, options: dict, message: str, cli_fix: str
) -> None:
    with pytest.raises(EngineError, match=message) as info:
        plan(cpus, gpus, **options)
    assert cli_fix in info.value.cli_message() and "\n" not in info.value.cli_message()


def test_options_are_checked_when_made() -> None:
    with pytest.raises(EngineError, match="workers must be at least 1"):
        RayOptions(workers=0)
    with pytest.raises(EngineError, match="cpus_per_worker must be a number >= 0"):
        RayOptions(cpus_per_worker=float("nan"))
    with pytest.raises(EngineError, match="no CPU and no GPU") as info:
        RayOptions(cpus_per_worker=0)
    assert "--gpus-per-worker 1" in info.value.cli_message()
