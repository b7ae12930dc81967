"""``saliscope explain``, ``saliscope demo`` and ``saliscope methods``: maps for images, the sample photos,
and the list of methods."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .common import (
    build_settings,
    debug_option,
    load_cli_model,
    method_options,
    methods_option,
    model_options,
    run_sources,
)
from .engine_options import ENGINE_KEYS, engine_choice, engine_options
from .targets import target_options

DEMO_METHODS = "gradient,smoothgrad,integrated-gradients,gradcam"


@click.command()
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@model_options()
@click.option(
    "--target",
    "-t",
    default="predicted",
    show_default=True,
    metavar="CLASS",
    help="'predicted', a class index, or a label name.",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=None,
    metavar="K",
    help="Explain each of the K best-ranked classes (files named <method>-top<k>.*).",
)
@target_options
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("saliscope-out"),
    show_default=True,
    help="Output folder.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Judge every map (map, deletion, completeness; stability and sanity unless too slow), print one "
    "verdict line per method and write OUT/index.html with the images, maps and verdicts.",
)
@method_options
@engine_options
@click.pass_context
def explain(
    ctx: click.Context,
    images: tuple[str, ...],
    model_spec: str | None,
    arch: str | None,
    target: str,
    top_k: int | None,
    out: Path,
    check: bool,
    **options: Any,
) -> None:
    """Explain the model's decision on IMAGE... (files or folders of images).

    For each image, prints the top-5 classes and writes to OUT/<image name>/: <method>.png (the map over
    the photo), <method>.npy (raw attributions, C×H×W float32) and panel.png (all methods side by side);
    then OUT/summary.json. With --check, also each map's verdicts and OUT/index.html. With --engine ray the
    images are explained on a Ray cluster (a local Ray instance unless --ray-address names one); the files are
    the same.

    Detectors (e.g. --model torchvision:fasterrcnn_mobilenet_v3_large_320_fpn): prints the detections and
    explains one, --detection K or --box x0,y0,x1,y1 [--label NAME]; segmentation models: --label NAME over
    --mask MASK.png or --region x0,y0,x1,y1. The box or region is drawn on every map.
    """
    from . import pipeline, regions, targets

    if top_k is not None and target.strip().lower() not in ("predicted", "top1", "top-1"):
        raise click.UsageError("--top-k explains the top classes; it cannot be combined with --target")
    region = regions.Planner(targets.request(options, target=target, top_k=top_k))
    engine, cluster = engine_choice(*(options.pop(key) for key in ENGINE_KEYS), device=options["device"])
    settings = build_settings(
        options,
        out=out,
        target=target,
        top_k=top_k,
        model_spec=model_spec,
        check=check,
        region=region,
        engine=engine,
        ray=cluster,
    )
    sources = pipeline.file_sources(images)
    if len(sources) == 1:
        sources = [pipeline.preread(sources[0])]  # a bad lone image fails before the model loads
    model = load_cli_model(model_spec, arch, settings.device)
    run_sources(ctx, sources, model, settings)


@click.command()
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("saliscope-demo"),
    show_default=True,
    help="Output folder.",
)
@methods_option(DEMO_METHODS)
@click.pass_context
def demo(ctx: click.Context, out: Path, **options: Any) -> None:
    """Explain the default model on scikit-image's four sample photos (cat, coffee, astronaut, rocket) and
    judge every map: one verdict line per method, and OUT/index.html with the photos, their top-5, the maps
    and each map's verdicts."""
    from ..io import sample_images
    from . import pipeline

    title = "saliscope demo: four photos, their maps, and whether to trust them"
    settings = build_settings(options, out=out, check=True, page_title=title)
    model = load_cli_model(None, None, settings.device)
    sources = [pipeline.Source(f"skimage.data.{name}", name, image.copy) for name, image in sample_images().items()]
    run_sources(ctx, sources, model, settings)


@click.command()
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
