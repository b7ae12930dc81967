"""``saliscope app``: the browser explorer (Gradio) on this machine."""

from __future__ import annotations

import click

from .common import debug_option, load_cli_model, model_options


@click.command()
@model_options()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to serve on. 127.0.0.1 is this machine only; 0.0.0.0 opens the page to every network the "
    "machine is on.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="Port to serve on.")
@click.option(
    "--methods",
    "-m",
    default="gradient,gradcam,integrated-gradients",
    show_default=True,
    metavar="NAMES",
    help="Methods ticked when the page opens (every method that fits the model can be ticked there).",
)
@click.option(
    "--checks",
    default="all",
    show_default=True,
    metavar="NAMES",
    help="Checks whose verdicts each map shows: map, deletion, stability, sanity, completeness (comma-separated), "
    "'all' or 'none'. Fewer checks, faster verdicts.",
)
@click.option(
    "--n-steps", type=click.IntRange(min=1), default=32, show_default=True, help="Integrated Gradients steps."
)
@click.option(
    "--n-samples", type=click.IntRange(min=1), default=50, show_default=True, help="SmoothGrad noisy samples."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for noise-based methods and checks.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (or cuda:N).")
@debug_option
def app(
    model_spec: str | None,
    arch: str | None,
    host: str,
    port: int,
    methods: str,
    checks: str,
    n_steps: int,
    n_samples: int,
    seed: int,
    device: str,
) -> None:
    """Explore a model's maps in the browser: upload a photo (or pick a sample), press Explain, switch the class,
    the evidence and the opacity, run the measured comparison, download the maps.

    Needs the optional extra: pip install -e ".[app]". Serves until Ctrl+C.
    """
    from ..app import AppSettings, Explorer, launch, require_gradio
    from ..core.errors import SaliscopeError
    from ..registry import MethodOptions
    from .common import checked_device
    from .pipeline import method_names

    require_gradio()  # before the model loads: a missing extra is the whole answer
    settings = AppSettings(
        methods=method_names([methods]),
        options=MethodOptions(seed=seed, n_steps=n_steps, n_samples=n_samples),
        checks=check_names(checks),
        device=checked_device(device),
    )
    model = load_cli_model(model_spec, arch, settings.device)
    explorer = Explorer(model, settings, model_name=model_spec)
    click.echo(f"saliscope explorer: http://{_shown_host(host)}:{port}/  (Ctrl+C stops it)")
    try:
        launch(explorer, host=host, port=port, block=True, quiet=True)
    except OSError as exc:
        raise SaliscopeError(
            f"cannot serve on {host}:{port}: the port is taken, or the address is not one of this machine's",
            "pass another port, e.g. port=7861",
            "pass another --port, e.g. --port 7861, or stop what is using it",
        ) from exc


def check_names(text: str) -> tuple[str, ...]:
    """``"map,deletion"`` / ``"all"`` / ``"none"`` → check names, checked."""
    from ..core.errors import SaliscopeError
    from ..trust import CHECKS

    parts = [p.strip().lower() for p in text.split(",") if p.strip()]
    if parts == ["all"]:
        return CHECKS
    if parts == ["none"]:
        return ()
    unknown = [p for p in parts if p not in CHECKS]
    if unknown or not parts:
        raise SaliscopeError(
            f"unknown check(s) in --checks {text!r}", f"use some of {', '.join(CHECKS)} (comma-separated), all or none"
        )
    return tuple(dict.fromkeys(parts))


def _shown_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
