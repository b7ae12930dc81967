"""What the ``saliscope`` commands share: exit codes, the debug flag, option groups, settings, model loading
and the per-image run. Every command module imports from here; nothing here imports a command."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from ..core.views import DEFAULT_ALPHA, EVIDENCE

EXIT_PARTIAL = 1
EXIT_USER = 2
EXIT_INTERNAL = 3
DEFAULT_METHODS = "gradient,smoothgrad,integrated-gradients"

F = TypeVar("F", bound=Callable[..., Any])


def with_options(f: F, options: list[Callable[[Any], Any]]) -> F:
    """``f`` with the click ``options`` added, listed in the order ``--help`` shows them."""
    for option in reversed(options):
        f = option(f)
    return f


@dataclass
class State:
    debug: bool = False
    # The model options that change how a model is read and fed (see model_options); load_cli_model applies them.
    preprocess: dict[str, Any] = field(default_factory=dict)
    trust_pickle: bool = False


def state(ctx: click.Context) -> State:
    found = ctx.find_object(State)
    return found if found is not None else ctx.ensure_object(State)


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        state(ctx).debug = True
    return value


def debug_option(f: F) -> F:
    return click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        callback=_set_debug,
        is_eager=True,
        help="Show the full traceback of internal errors.",
    )(f)


def _keep_preprocess(key: str, parse: Callable[[Any], Any] | None = None) -> Callable[..., Any]:
    def store(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None and value is not False:
            state(ctx).preprocess[key] = parse(value) if parse is not None else value
        return value

    return store


def _set_trust(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        state(ctx).trust_pickle = True
    return value


def model_options(required: bool = False, help_text: str | None = None) -> Callable[[F], F]:
    """``--model`` and ``--arch``, the preprocessing overrides (``--input-size``, ``--resize``, ``--no-crop``,
    ``--mean``, ``--std``) and ``--trust-pickle``: shared by every command that loads a model.

    The overrides and ``--trust-pickle`` are kept on the context's :class:`State` (they reach no command's
    arguments) and applied by :func:`load_cli_model`, so every such command gets them the same way.
    """
    from ..models.preprocess import parse_channels

    model_help = help_text or (
        "'default' (EfficientNet-Lite0), torchvision:NAME, timm:NAME, hf:ORG/NAME or hf:FOLDER (Hugging Face),"
        " or a model file (TorchScript, saliscope.save_model, or a state dict with --arch)."
    )

    def decorate(f: F) -> F:
        options = [
            click.option("--arch", default=None, metavar="A", help="Architecture for a state-dict weights file."),
            click.option(
                "--input-size",
                type=click.IntRange(min=1),
                metavar="N",
                expose_value=False,
                callback=_keep_preprocess("input_size"),
                help="The model's input side in pixels (overrides what the loader inferred, e.g. 224 for a "
                "TorchScript file).",
            ),
            click.option(
                "--resize",
                type=click.IntRange(min=1),
                metavar="N",
                expose_value=False,
                callback=_keep_preprocess("resize"),
                help="Resize the shorter side to N pixels before the centre crop (overrides the model's).",
            ),
            click.option(
                "--no-crop",
                is_flag=True,
                expose_value=False,
                callback=_keep_preprocess("no_crop"),
                help="Resize the shorter side to the input size instead of resizing larger and centre-cropping.",
            ),
            click.option(
                "--mean",
                metavar="R,G,B",
                expose_value=False,
                callback=_keep_preprocess("mean", lambda v: parse_channels(v, "mean")),
                help="Per-channel mean subtracted from pixels in [0, 1] (overrides the model's).",
            ),
            click.option(
                "--std",
                metavar="R,G,B",
                expose_value=False,
                callback=_keep_preprocess("std", lambda v: parse_channels(v, "std")),
                help="Per-channel standard deviation the model's inputs are divided by (overrides the model's).",
            ),
            click.option(
                "--trust-pickle",
                is_flag=True,
                expose_value=False,
                callback=_set_trust,
                help="Unpickle a model file saved with torch.save(model): this runs code stored in the file, so only "
                "for files you trust.",
            ),
        ]
        f = with_options(f, options)
        # click treats an explicit default (even None) as a value, so a required option gets none.
        default: dict[str, Any] = {"required": True} if required else {"default": None}
        return click.option("--model", "model_spec", metavar="M", help=model_help, **default)(f)

    return decorate


def method_options(f: F) -> F:
    """Options shared by ``explain``, ``demo``, ``evaluate`` and ``compare``."""
    return methods_option(DEFAULT_METHODS)(f)


def methods_option(default: str) -> Callable[[F], F]:
    """The method options, with ``default`` as the methods run when none are named."""
    return lambda f: _method_options(f, default)


def _method_options(f: F, default: str) -> F:
    decorators = [
        click.option(
            "--method",
            "--methods",
            "-m",
            "methods",
            multiple=True,
            default=(default,),
            show_default=True,
            metavar="NAMES",
            help="Comma-separated methods (see `saliscope methods`), or 'all'.",
        ),
        click.option(
            "--evidence",
            type=click.Choice(EVIDENCE),
            default=None,
            help="Show signed, positive, negative or absolute evidence (default: per method).",
        ),
        click.option(
            "--alpha",
            type=click.FloatRange(0.0, 1.0),
            default=DEFAULT_ALPHA,
            show_default=True,
            help="Overlay opacity at the strongest evidence (opacity = alpha × sqrt|value|).",
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for noise-based methods."),
        click.option(
            "--n-samples",
            type=click.IntRange(min=1),
            default=50,
            show_default=True,
            help="Noisy samples for SmoothGrad / SmoothGrad² / VarGrad.",
        ),
        click.option(
            "--sigma",
            type=click.FloatRange(min=0.0),
            default=0.15,
            show_default=True,
            help="SmoothGrad noise level, as a fraction of the input's value range.",
        ),
        click.option(
            "--n-steps",
            type=click.IntRange(min=1),
            default=None,
            help="Integrated Gradients with this many fixed Gauss–Legendre steps (default: adaptive steps, "
            "refined until the completeness gap meets --tolerance).",
        ),
        click.option(
            "--tolerance",
            type=click.FloatRange(min=0.0, min_open=True),
            default=0.05,
            show_default=True,
            help="Integrated Gradients: the relative completeness gap the adaptive steps refine to.",
        ),
        click.option(
            "--max-evals",
            type=click.IntRange(min=3),
            default=None,
            metavar="N",
            help="Integrated Gradients: most gradient evaluations per image for the adaptive steps (default: 96).",
        ),
        click.option(
            "--baseline",
            type=click.Choice(("zero", "black", "blur", "uniform")),
            default=None,
            help="Integrated Gradients baseline (default: black when the model has a preprocessing).",
        ),
        click.option(
            "--layer",
            default=None,
            metavar="NAME",
            help="Layer a CAM reads, as in model.named_modules() (default: the last spatial layer).",
        ),
        click.option(
            "--window",
            type=click.IntRange(min=1),
            default=None,
            metavar="PX",
            help="Occlusion window side in pixels (default: image side / 14, i.e. 16 on 224).",
        ),
        click.option(
            "--stride",
            type=click.IntRange(min=1),
            default=None,
            metavar="PX",
            help="Occlusion stride in pixels (default: half the window).",
        ),
        click.option(
            "--n-perturbations",
            type=click.IntRange(min=1),
            default=None,
            metavar="N",
            help="RISE / D-RISE masks, LIME and KernelSHAP samples (default: 2000 / 4000 / 1000 / 1000).",
        ),
        click.option(
            "--superpixels",
            "n_superpixels",
            type=click.IntRange(min=1),
            default=50,
            show_default=True,
            metavar="N",
            help="About how many SLIC superpixels LIME and KernelSHAP use.",
        ),
        click.option(
            "--chunk-size",
            type=click.IntRange(min=1),
            default=None,
            help="Samples per model call (default: chosen from a memory budget).",
        ),
        click.option("--device", default="cpu", show_default=True, help="cpu or cuda (or cuda:N)."),
        debug_option,
    ]
    return with_options(f, decorators)


def build_settings(options: dict[str, Any], **fields: Any) -> Any:
    from .. import registry
    from . import pipeline

    mopts = registry.MethodOptions(
        seed=options["seed"],
        n_samples=options["n_samples"],
        sigma=options["sigma"],
        n_steps=options["n_steps"],
        tolerance=options["tolerance"],
        max_evals=options["max_evals"],
        baseline=options["baseline"],
        chunk_size=options["chunk_size"],
        layer=options["layer"],
        evidence=options["evidence"],
        window=options["window"],
        stride=options["stride"],
        n_perturbations=options["n_perturbations"],
        n_superpixels=options["n_superpixels"],
    )
    return pipeline.Settings(
        methods=pipeline.method_names(options["methods"]),
        all_methods=any(part.strip().lower() == "all" for value in options["methods"] for part in value.split(",")),
        out=pipeline.check_out(fields.pop("out")),
        evidence=options["evidence"],
        alpha=options["alpha"],
        options=mopts,
        device=checked_device(options["device"]),
        **fields,
    )


def checked_device(device: str) -> str:
    from ..core.devices import check_device

    check_device(device, name="--device")  # before the model loads: a wrong device fails fast
    return device


def load_cli_model(spec: str | None, arch: str | None, device: str) -> Any:
    """``--model`` / ``--arch`` → a loaded model (errors carry their command-line wording), with
    ``--trust-pickle`` and the preprocessing overrides of :func:`model_options` applied."""
    from ..models import load_model

    ctx = click.get_current_context(silent=True)
    found = state(ctx) if ctx is not None else State()
    extra: dict[str, Any] = {"trust_pickle": True} if found.trust_pickle else {}
    model = load_model(spec, arch=arch, device=device, **extra)
    if found.preprocess:
        wanted = dict(found.preprocess)
        crop = not wanted.pop("no_crop", False)
        preprocess: Any = model.preprocess
        model.preprocess = preprocess.with_overrides(crop=crop, **wanted)
    return model


def run_sources(ctx: click.Context, sources: Sequence[Any], model: Any, settings: Any) -> None:
    from tqdm.auto import tqdm

    from . import pipeline

    bar: Any = None

    def progress(items: list[Any]) -> Any:
        nonlocal bar
        bar = tqdm(
            items, desc="images", unit="image", file=sys.stderr, leave=False, disable=True if len(items) < 2 else None
        )
        return bar

    def out_line(text: str) -> None:
        tqdm.write(text, file=sys.stdout) if bar is not None and not bar.disable else click.echo(text)

    def err_line(text: str) -> None:
        tqdm.write(text, file=sys.stderr) if bar is not None and not bar.disable else click.echo(text, err=True)

    try:
        outcome = pipeline.run(
            list(sources),
            model,
            settings,
            out_line=out_line,
            err_line=err_line,
            debug=state(ctx).debug,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    if outcome.summary_path is not None:
        click.echo(f"results in {settings.out}{os.sep} (summary: {outcome.summary_path})")
    if outcome.failures:
        total = len(sources)
        click.echo(f"{len(outcome.failures)} of {total} images failed:", err=True)
        for path, reason in outcome.failures:
            click.echo(f"  {path}: {reason}", err=True)
        if any(reason.startswith("internal error") for _, reason in outcome.failures):
            click.echo("run with --debug for the traceback", err=True)
        ctx.exit(EXIT_PARTIAL)
