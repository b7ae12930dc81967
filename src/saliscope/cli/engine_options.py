"""``--engine`` and the Ray options, shared by ``audit`` and ``explain``: where the images are processed."""

from __future__ import annotations

import click

from ..audit.engines.options import ENGINES, INSTALL_RAY, Engine, EngineError, RayOptions, check_engine
from .common import F, with_options

ENGINE_KEYS = ("engine", "ray_address", "workers", "cpus_per_worker", "gpus_per_worker")


def engine_options(f: F) -> F:
    decorators = [
        click.option(
            "--engine",
            type=click.Choice(ENGINES),
            default="local",
            show_default=True,
            help=f"Where images are processed: this process, or a Ray cluster (needs {INSTALL_RAY}).",
        ),
        click.option(
            "--ray-address",
            default=None,
            metavar="ADDR",
            help="A running Ray cluster ('auto' on one of its nodes); default: a local Ray instance for the run.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            metavar="N",
            help="Ray workers, one model each (default: one per GPU, or as many as fit beside the readers).",
        ),
        click.option(
            "--cpus-per-worker",
            type=click.FloatRange(min=0.0),
            default=None,
            metavar="F",
            help="CPUs each Ray worker reserves (default: 1, less when --workers would not fit).",
        ),
        click.option(
            "--gpus-per-worker",
            type=click.FloatRange(min=0.0),
            default=None,
            metavar="F",
            help="GPUs each Ray worker reserves; fractions share a GPU (default: 1 on a cluster with GPUs).",
        ),
    ]
    return with_options(f, decorators)


def engine_choice(
    engine: str,
    ray_address: str | None,
    workers: int | None,
    cpus_per_worker: float | None,
    gpus_per_worker: float | None,
    *,
    device: str,
) -> tuple[Engine, RayOptions]:
    """The options given → the engine and the Ray options, checked before any model loads: Ray options need
    ``--engine ray``, which needs Ray installed, and places models on the workers' GPUs itself."""
    given = {
        "--ray-address": ray_address,
        "--workers": workers,
        "--cpus-per-worker": cpus_per_worker,
        "--gpus-per-worker": gpus_per_worker,
    }
    named = [name for name, value in given.items() if value is not None]
    if engine == "local" and named:
        raise EngineError(f"{', '.join(named)} apply to --engine ray only", "add --engine ray, or leave them out")
    chosen = check_engine(engine)
    if chosen == "ray" and device != "cpu":
        raise EngineError(
            f"--device {device} applies to --engine local; Ray workers use their own GPU when they have one",
            "leave out --device and give the workers GPUs with --gpus-per-worker 1",
        )
    return chosen, RayOptions(ray_address, workers, cpus_per_worker, gpus_per_worker)
