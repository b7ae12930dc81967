"""The ``saliscope`` command: parses, calls the library, prints. Nothing else lives here.

Exit codes: 0 success; 1 some images of a multi-image run failed (the others are complete);
2 a user error (bad option, unknown method / model / label, unreadable image: one ``error:`` line);
3 an internal error (a bug: one line, ``--debug`` shows the traceback).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from .. import __version__
from ..core.errors import SaliscopeError
from ..core.views import DEFAULT_ALPHA, EVIDENCE

EXIT_PARTIAL = 1
EXIT_USER = 2
EXIT_INTERNAL = 3
DEFAULT_METHODS = "gradient,smoothgrad,integrated-gradients"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class State:
    debug: bool = False


class SaliscopeGroup(click.Group):
    """Turns errors into one line on stderr: user errors exit 2, bugs exit 3 (traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except SaliscopeError as exc:
            _fail(f"error: {_one_line(str(exc))}", EXIT_USER)
        except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a short message
            if _state(ctx).debug:
                traceback.print_exc(file=sys.stderr)
                sys.stderr.flush()
                _fail(f"internal error: {type(exc).__name__}: {_one_line(str(exc))}", EXIT_INTERNAL)
            _fail(f"internal error: {type(exc).__name__}: {_one_line(str(exc))}\n"
                  "run with --debug for the traceback", EXIT_INTERNAL)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    raise click.exceptions.Exit(code)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _state(ctx: click.Context) -> State:
    state = ctx.find_object(State)
    if state is None:
        state = ctx.ensure_object(State)
    return state


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        _state(ctx).debug = True
    return value


def debug_option(f: F) -> F:
    return click.option("--debug", is_flag=True, expose_value=False, callback=_set_debug, is_eager=True,
                        help="Show the full traceback of internal errors.")(f)


@click.group(cls=SaliscopeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="saliscope", message="%(prog)s %(version)s")
@debug_option
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Saliency maps for PyTorch image models: which pixels raise (or lower) a class score?

    \b
    Examples:
      saliscope demo
      saliscope explain cat.jpg --method all
      saliscope explain photos/ --model timm:resnet18 --target "tabby cat" --out results
    """
    _state(ctx)


def method_options(f: F) -> F:
    """Options shared by ``explain``, ``demo``, ``evaluate`` and ``compare``."""
    return methods_option(DEFAULT_METHODS)(f)


def methods_option(default: str) -> Callable[[F], F]:
    """The method options, with ``default`` as the methods run when none are named."""
    return lambda f: _method_options(f, default)


def _method_options(f: F, default: str) -> F:
    decorators = [
        click.option("--method", "--methods", "-m", "methods", multiple=True, default=(default,), show_default=True,
                     metavar="NAMES", help="Comma-separated methods (see `saliscope methods`), or 'all'."),
        click.option("--evidence", type=click.Choice(EVIDENCE), default=None,
                     help="Show signed, positive, negative or absolute evidence (default: per method)."),
        click.option("--alpha", type=click.FloatRange(0.0, 1.0), default=DEFAULT_ALPHA, show_default=True,
                     help="Overlay opacity at the strongest evidence (opacity = alpha × sqrt|value|)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed for noise-based methods."),
        click.option("--n-samples", type=click.IntRange(min=1), default=50, show_default=True,
                     help="Noisy samples for SmoothGrad / SmoothGrad² / VarGrad."),
        click.option("--sigma", type=click.FloatRange(min=0.0), default=0.15, show_default=True,
                     help="SmoothGrad noise level, as a fraction of the input's value range."),
        click.option("--n-steps", type=click.IntRange(min=1), default=32, show_default=True,
                     help="Integration steps for Integrated Gradients."),
        click.option("--baseline", type=click.Choice(("zero", "black", "blur", "uniform")), default=None,
                     help="Integrated Gradients baseline (default: black when the model has a preprocessing)."),
        click.option("--layer", default=None, metavar="NAME",
                     help="Layer a CAM reads, as in model.named_modules() (default: the last spatial layer)."),
        click.option("--window", type=click.IntRange(min=1), default=None, metavar="PX",
                     help="Occlusion window side in pixels (default: image side / 14, i.e. 16 on 224)."),
        click.option("--stride", type=click.IntRange(min=1), default=None, metavar="PX",
                     help="Occlusion stride in pixels (default: half the window)."),
        click.option("--n-perturbations", type=click.IntRange(min=1), default=None, metavar="N",
                     help="RISE masks / LIME and KernelSHAP samples (default: 2000 / 1000 / 1000)."),
        click.option("--superpixels", "n_superpixels", type=click.IntRange(min=1), default=50, show_default=True,
                     metavar="N", help="About how many SLIC superpixels LIME and KernelSHAP use."),
        click.option("--chunk-size", type=click.IntRange(min=1), default=None,
                     help="Samples per model call (default: chosen from a memory budget)."),
        click.option("--device", default="cpu", show_default=True, help="cpu or cuda (or cuda:N)."),
        debug_option,
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


@cli.command()
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--model", "model_spec", default=None, metavar="M",
              help="'default' (EfficientNet-Lite0), torchvision:NAME, timm:NAME, or a weights file.")
@click.option("--arch", default=None, metavar="A", help="Architecture for a state-dict weights file.")
@click.option("--target", "-t", default="predicted", show_default=True, metavar="CLASS",
              help="'predicted', a class index, or a label name.")
@click.option("--top-k", type=click.IntRange(min=1), default=None, metavar="K",
              help="Explain each of the K best-ranked classes (files named <method>-top<k>.*).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("saliscope-out"), show_default=True,
              help="Output folder.")
@method_options
@click.pass_context
def explain(ctx: click.Context, images: tuple[str, ...], model_spec: str | None, arch: str | None, target: str,
            top_k: int | None, out: Path, **options: Any) -> None:
    """Explain the model's decision on IMAGE... (files or folders of images).

    For each image, prints the top-5 classes and writes to OUT/<image name>/: <method>.png (the map over
    the photo), <method>.npy (raw attributions, C×H×W float32) and panel.png (all methods side by side);
    then OUT/summary.json.
    """
    from . import pipeline

    if top_k is not None and target.strip().lower() not in ("predicted", "top1", "top-1"):
        raise click.UsageError("--top-k explains the top classes; it cannot be combined with --target")
    settings = _settings(options, out=out, target=target, top_k=top_k, model_spec=model_spec)
    sources = pipeline.file_sources(images)
    if len(sources) == 1:
        sources = [pipeline.preread(sources[0])]  # a bad lone image fails before the model loads
    model = _load_model(model_spec, arch, settings.device)
    _run(ctx, sources, model, settings)


@cli.command()
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("saliscope-demo"), show_default=True,
              help="Output folder.")
@method_options
@click.pass_context
def demo(ctx: click.Context, out: Path, **options: Any) -> None:
    """Explain the default model on scikit-image's four sample photos (cat, coffee, astronaut, rocket)."""
    from ..io import sample_images
    from . import pipeline

    settings = _settings(options, out=out)
    model = _load_model(None, None, settings.device)
    sources = [pipeline.Source(f"skimage.data.{name}", name, (lambda im=image: im))
               for name, image in sample_images().items()]
    _run(ctx, sources, model, settings)


@cli.command()
@debug_option
def methods() -> None:
    """List the attribution methods."""
    from .. import registry
    from ..viz import display_hint

    names = registry.available()
    width = max(len(n) for n in names)
    for name in names:
        spec = registry.get(name)
        hint = display_hint(name)
        shown = "signed" if hint.signed else "unsigned"
        click.echo(f"{name:<{width}}  {spec.summary}  [{shown}, {hint.reduce}]")


# ----- helpers -----------------------------------------------------------------------------------------


def _settings(options: dict[str, Any], **fields: Any) -> Any:
    from .. import registry
    from . import pipeline

    mopts = registry.MethodOptions(
        seed=options["seed"], n_samples=options["n_samples"], sigma=options["sigma"], n_steps=options["n_steps"],
        baseline=options["baseline"], chunk_size=options["chunk_size"], layer=options["layer"],
        evidence=options["evidence"],
        window=options["window"], stride=options["stride"], n_perturbations=options["n_perturbations"],
        n_superpixels=options["n_superpixels"],
    )
    return pipeline.Settings(
        methods=pipeline.method_names(options["methods"]),
        all_methods=any(part.strip().lower() == "all" for value in options["methods"] for part in value.split(",")),
        out=pipeline.check_out(fields.pop("out")),
        evidence=options["evidence"],
        alpha=options["alpha"],
        options=mopts,
        device=_checked_device(options["device"]),
        **fields,
    )


def _checked_device(device: str) -> str:
    from ..core.devices import check_device

    check_device(device, name="--device")  # before the model loads: a wrong device fails fast
    return device


def _load_model(spec: str | None, arch: str | None, device: str) -> Any:
    from ..models import load_model

    try:
        return load_model(spec, arch=arch, device=device)
    except SaliscopeError as exc:
        problem, fix = _cli_wording(exc.problem), None if exc.fix is None else _cli_wording(exc.fix)
        if (problem, fix) == (exc.problem, exc.fix):
            raise
        raise type(exc)(problem, fix or None) from exc


# The model loader's messages are written for Python callers (``load_model(path, arch=...)``,
# ``pretrained=False``); on the command line the same advice reads as options.
_CLI_WORDING: tuple[tuple[str, str], ...] = (
    (r"\s*\(in Python: [^()]*(?:\([^()]*\))?[^()]*\)", ""),
    (r"load_model\('([^']*)', arch='([^']*)'\)", r"--model \1 --arch \2"),
    (r"^pass pretrained=False, or ", ""),
    (r",? or (?:pass )?pretrained=False", ""),
    (r"^pass pretrained=False$", "pick another model, or pass a weights file with --model FILE --arch ARCH"),
    (r"\barch=('[^']*') is only used", r"--arch \1 is only used"),
    (r"\bdrop arch=,", "drop --arch,"),
    (r"pass the weights file as the model", "pass the weights file with --model"),
)


def _cli_wording(text: str) -> str:
    """A library message with its Python-call advice turned into command-line options."""
    import re

    for pattern, replacement in _CLI_WORDING:
        text = re.sub(pattern, replacement, text)
    return text


def _run(ctx: click.Context, sources: Sequence[Any], model: Any, settings: Any) -> None:
    from tqdm.auto import tqdm

    from . import pipeline

    bar: Any = None

    def progress(items: list[Any]) -> Any:
        nonlocal bar
        bar = tqdm(items, desc="images", unit="image", file=sys.stderr, leave=False,
                   disable=True if len(items) < 2 else None)
        return bar

    def out_line(text: str) -> None:
        tqdm.write(text, file=sys.stdout) if bar is not None and not bar.disable else click.echo(text)

    def err_line(text: str) -> None:
        tqdm.write(text, file=sys.stderr) if bar is not None and not bar.disable else click.echo(text, err=True)

    try:
        outcome = pipeline.run(list(sources), model, settings, out_line=out_line, err_line=err_line,
                               debug=_state(ctx).debug, progress=progress)
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


from .audit import audit  # noqa: E402 - issue 6: the shortcut audit (it imports helpers above)
cli.add_command(audit)
from . import compare as _compare, evaluate as _evaluate  # noqa: E402 - issue 5: each registers its command

del _compare, _evaluate


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="saliscope")
