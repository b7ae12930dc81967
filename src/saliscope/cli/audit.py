"""``saliscope audit DATA_DIR --model M``: a shortcut audit of a whole ImageFolder data set.

Parses, builds the explainer, hands the folder to :func:`saliscope.audit.run_audit` with a progress bar,
and prints one verdict line per class. Exit codes as for every command (see ``cli/main.py``): 0 done;
1 done, but some files could not be read or explained (they are listed); 2 a user error; 3 a bug; and 130 when
interrupted (Ctrl-C) — the results so far are kept, and ``--resume`` continues.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..core.errors import InputError, MethodError
from .common import EXIT_PARTIAL, checked_device, debug_option, load_cli_model, model_options
from .engine_options import engine_choice, engine_options

EXIT_INTERRUPTED = 130


def parse_region(text: str, size: int) -> tuple[float, float, float, float]:
    """``x0,y0,x1,y1`` in pixels of the model's ``size × size`` input, or in fractions of its side when all
    four are at most 1 → a box in fractions."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise InputError(
            f"--region {text!r} is not four numbers x0,y0,x1,y1",
            f"pass pixels of the {size}×{size} model input (e.g. 0,0,32,32) or fractions (0,0,0.15,0.15)",
        )
    if all(0.0 <= v <= 1.0 for v in values):
        return values[0], values[1], values[2], values[3]
    x0, y0, x1, y1 = values
    if any(v != int(v) for v in values):
        raise InputError(
            f"--region {text!r} mixes fractions and pixels",
            f"give four fractions in 0..1 (e.g. 0,0,0.15,0.15) or four whole pixels of the "
            f"{size}×{size} model input (e.g. 0,0,32,32)",
        )
    if not (0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size):
        raise InputError(
            f"--region {text!r} is not a box inside the {size}×{size} model input",
            f"give 0 <= x0 < x1 <= {size} and 0 <= y0 < y1 <= {size}, in pixels of the model input",
        )
    return x0 / size, y0 / size, x1 / size, y1 / size


class _Bar:
    """The audit's progress as a tqdm bar on stderr."""

    def __init__(self) -> None:
        self.bar: Any = None

    def start(self, total: int, done: int) -> None:
        from tqdm.auto import tqdm

        if done:
            click.echo(f"resuming: {done} images already audited, {total} to go", err=True)
        self.bar = tqdm(
            total=total,
            desc="auditing",
            unit="image",
            file=sys.stderr,
            leave=False,
            disable=True if total < 2 else None,
        )

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def write(self, text: str) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.write(text, file=sys.stderr)
        else:
            click.echo(text, err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command()
@click.argument("data_dir", type=click.Path(path_type=Path), metavar="DATA_DIR")
@model_options(
    required=True,
    help_text="The model trained on the data: a model file (saliscope.save_model, TorchScript, or a state dict with"
    " --arch), 'default', torchvision:NAME, timm:NAME or hf:ORG/NAME / hf:FOLDER.",
)
@click.option(
    "--method",
    "-m",
    default="gradcam",
    show_default=True,
    metavar="NAME",
    help="The attribution method (see `saliscope methods`).",
)
@click.option(
    "--target",
    type=click.Choice(("predicted", "label")),
    default="predicted",
    show_default=True,
    help="Explain each image's predicted class, or its folder's class (folders must name labels).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("saliscope-audit"),
    show_default=True,
    help="Output folder: report.html, summary.json, records.jsonl, state.npz.",
)
@click.option(
    "--region",
    default=None,
    metavar="x0,y0,x1,y1",
    help="Also measure this box: pixels of the model input, or fractions when all are <= 1.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Images per model call.")
@click.option("--resume", is_flag=True, help="Continue an interrupted audit in --out.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Audit at most N images, taken in turn from each class.",
)
@click.option("--layer", default=None, metavar="NAME", help="Layer a CAM reads (default: the last spatial layer).")
@click.option(
    "--border",
    type=click.FloatRange(0.01, 0.49),
    default=0.1,
    show_default=True,
    help="Border width, as a fraction of each side.",
)
@click.option(
    "--corner",
    type=click.FloatRange(0.01, 0.5),
    default=0.3,
    show_default=True,
    help="Corner square side, and depth of the edge bands, as a fraction of the input's side.",
)
@click.option(
    "--min-excess",
    type=click.FloatRange(0.0, 1.0),
    default=0.35,
    show_default=True,
    help="Excess concentration that flags a region (see the report).",
)
@click.option(
    "--min-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="Share of a class's images that must concentrate there individually.",
)
@click.option(
    "--min-spot-share",
    type=click.FloatRange(0.0, 1.0),
    default=0.8,
    show_default=True,
    help="The same for a class's fixed spot, which follows where its content usually is.",
)
@click.option(
    "--top",
    "top_n",
    type=click.IntRange(min=0),
    default=8,
    show_default=True,
    help="Most suspicious images shown per class.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for noise-based methods.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None, help="Samples per model call inside a method.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda (or cuda:N).")
@engine_options
@debug_option
@click.pass_context
def audit(
    ctx: click.Context,
    data_dir: Path,
    model_spec: str,
    arch: str | None,
    method: str,
    target: str,
    out: Path,
    region: str | None,
    batch_size: int,
    resume: bool,
    limit: int | None,
    layer: str | None,
    border: float,
    corner: float,
    min_excess: float,
    min_share: float,
    min_spot_share: float,
    top_n: int,
    seed: int,
    chunk_size: int | None,
    device: str,
    engine: str,
    ray_address: str | None,
    workers: int | None,
    cpus_per_worker: float | None,
    gpus_per_worker: float | None,
) -> None:
    """Audit a data set for shortcuts: where does the model's evidence sit, class by class?

    DATA_DIR holds one sub-folder of images per class. Every image is explained; the audit measures how
    much saliency lies in the border, the corners, --region, and a fixed spot shared by a class, and
    prints one verdict per class. Writes OUT/report.html (self-contained) and OUT/summary.json.

    With --engine ray the images are read and explained on a Ray cluster (a local Ray instance unless
    --ray-address names one); the outputs are the same.
    """
    from .. import registry
    from ..audit import AuditSettings, Thresholds, run_audit, scan_image_folder
    from ..methods.attention import refusal
    from . import pipeline

    spec = registry.get(method)  # an unknown method fails before the model loads
    chosen, cluster = engine_choice(engine, ray_address, workers, cpus_per_worker, gpus_per_worker, device=device)
    out = pipeline.check_out(out)
    device = checked_device(device)
    scan_image_folder(data_dir)  # a wrong folder fails before the model loads
    model = load_cli_model(model_spec, arch, device)
    preprocess = model.preprocess  # with --input-size / --resize / --no-crop / --mean / --std applied
    reason = refusal(model) if spec.needs_attention else None
    if reason is not None:
        raise MethodError(f"{spec.name} does not apply to this model: {reason}", "use a CAM such as --method gradcam")
    options = registry.MethodOptions(seed=seed, chunk_size=chunk_size, layer=layer)
    explainer = registry.create(spec.name, model, options)
    pipeline.check_layer(model, {spec.name: explainer}, device)
    settings = AuditSettings(
        method=spec.name,
        target=target,  # type: ignore[arg-type]  # click.Choice(["predicted", "label"])
        batch_size=batch_size,
        border=border,
        corner=corner,
        region=None if region is None else parse_region(region, preprocess.size),
        thresholds=Thresholds(min_excess=min_excess, min_share=min_share, min_spot_share=min_spot_share),
        top_n=top_n,
        limit=limit,
        options=options,
    )
    bar = _Bar()

    def warn(text: str) -> None:
        bar.write(f"warning: {text}")

    try:
        outcome = run_audit(
            data_dir,
            model,
            out=out,
            settings=settings,
            resume=resume,
            explainer=explainer,
            preprocess=preprocess,
            progress=bar,
            warn=warn,
            model_spec=model_spec,
            engine=chosen,
            ray_address=cluster.address,
            workers=cluster.workers,
            cpus_per_worker=cluster.cpus_per_worker,
            gpus_per_worker=cluster.gpus_per_worker,
        )
    except KeyboardInterrupt:
        bar.close()  # before the message, so the bar's line does not swallow it
        click.echo(
            f"interrupted: the results so far are kept in {out}; continue with the same command and --resume", err=True
        )
        ctx.exit(EXIT_INTERRUPTED)
    finally:
        bar.close()
    for line in outcome.summary["verdicts"]:
        click.echo(line)
    click.echo(f"report: {outcome.report_path} (summary: {outcome.summary_path})")
    if outcome.failures:
        click.echo(f"{len(outcome.failures)} files could not be audited and were skipped:", err=True)
        for key, reason in outcome.failures:
            click.echo(f"  {key}: {reason}", err=True)
        ctx.exit(EXIT_PARTIAL)
