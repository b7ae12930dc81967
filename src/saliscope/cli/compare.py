"""``saliscope compare IMAGE``: every method side by side on one image, and the measured comparison chart."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .common import build_settings, load_cli_model, methods_option, model_options
from .targets import target_options


@click.command()
@click.argument("image", metavar="IMAGE")
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
    "--timing-runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Timed explanations per method after a warm-up call; the time row is the fastest of them. A "
    "method whose first call takes 1 s or more is timed by that call alone.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("saliscope-compare"),
    show_default=True,
    help="Output folder.",
)
@target_options
@methods_option("all")
def compare(
    image: str, model_spec: str | None, arch: str | None, target: str, timing_runs: int, out: Path, **options: Any
) -> None:
    """Compare methods on IMAGE: maps side by side, and a chart of measured time, finest detail,
    stability, faithfulness and sanity, graded good / moderate / poor, with every flag.

    Every row judges the map shown for the method (e.g. Gradient's magnitude, Grad-CAM's positive part);
    --evidence changes it for every method. Time: the fastest of --timing-runs explanations after a
    warm-up call, or the first call alone for a method taking 1 s or more.

    Writes OUT/compare.png (maps over the chart), OUT/compare.html (self-contained) and OUT/compare.json.

    Detectors and segmentation models take the target options of `saliscope explain` (--detection,
    --box, --label, --mask, --region); every row then judges the maps of that detection or region.
    """
    import time

    import torch

    from .. import registry
    from ..core.targets import logits_of
    from ..trust import compare_methods
    from ..viz import panel, save_json, save_png
    from ..viz.files import atomic_write, png_bytes
    from ..viz.scorecard import scorecard_figure, scorecard_html, stacked
    from . import pipeline, regions, targets

    began = time.perf_counter()
    region = regions.Planner(targets.request(options, target=target))
    settings = build_settings(options, out=out, target=target, model_spec=model_spec)
    source = pipeline.preread(pipeline.file_sources([image])[0])
    model = load_cli_model(model_spec, arch, settings.device)
    labels = getattr(model, "labels", None)
    dense = region.plan(model, settings)
    if dense is None:
        target_index = pipeline.resolve_target(settings.target, labels, pipeline.num_classes(model, settings.device))
    kind = "classifier" if dense is None else dense.kind
    names = pipeline.applicable(model, settings, lambda line: click.echo(line, err=True), kind)
    explainers = {name: registry.create(name, model, settings.options) for name in names}
    pipeline.check_layer(model, explainers, settings.device)

    photo = source.read()
    if dense is None:
        preprocess = model.preprocess
        box: tuple[float, float, float, float] | None = preprocess.crop_box(*photo.size)
        x = preprocess(photo).to(settings.device)
        with torch.no_grad():
            probs = torch.softmax(logits_of(model(x)).float(), dim=1)[0].cpu()
        cls = int(probs.argmax()) if target_index is None else target_index
        label = pipeline.label_of(labels, cls)
        explained: Any = cls
        outline = None
        heading = f"{Path(source.path).name}: {label} ({float(probs[cls]):.1%})"
        head = {"image": source.path, "class": cls, "label": label, "probability": float(probs[cls])}
        shown = f"class {cls} '{label}' ({float(probs[cls]):.1%})"
        click.echo(f"{source.path}: explaining {shown} with {len(names)} methods")
    else:
        ready = dense.prepare(model, photo, click.echo, source.path)
        x, explained, outline, heading, box = ready.x, ready.target, ready.outline, ready.heading, None
        head = {"image": source.path, "target": ready.explained, **ready.found}
        click.echo(f"  with {len(names)} methods")

    result = compare_methods(
        model,
        x,
        explainers,
        explained,
        timing_runs=timing_runs,
        evidence=settings.evidence,
        seed=settings.options.seed or 0,
        on_method=lambda name: click.echo(f"  measuring {name} ...", err=True),
        on_result=lambda r: click.echo(f"  {r.name}: done in {r.elapsed_s:.1f} s", err=True),
    )

    titles = [registry.get(r.name).title for r in result.results]
    views = [r.scored_on for r in result.results]
    columns = [(title, r.shown_map()[0, 0], r.view.signed) for r, title in zip(result.results, titles, strict=True)]
    maps = panel(photo, columns, crop_box=box, title=heading, alpha=settings.alpha, outline=outline)
    flags = [(registry.get(m).title, s, line) for m, s, line in result.flags()]
    notes = [
        "Every row judges one map per method, the one the maps figure shows: "
        + "; ".join(f"{t}: {r.scored_on}" for t, r in zip(titles, result.results, strict=True))
        + ".",
        result.timing_rule + ".",
        'Rows and thresholds: README, section "saliscope compare: the measured method comparison".',
    ]
    chart = scorecard_figure(
        titles,
        result.rows(),
        title="measured on this image",
        subtitles=views,
        subtitle_name="map shown and scored:",
        footnotes=[*notes[:2], *_flag_notes(flags)],
        width=float(maps.get_size_inches()[0]),
    )
    figure = stacked([maps, chart])
    page = scorecard_html(
        titles,
        result.rows(),
        title=f"saliscope compare — {heading}",
        subtitles=views,
        subtitle_name="map shown and scored:",
        figures=[("maps", png_bytes(maps))],
        flags=flags,
        notes=notes,
    )
    record = {**head, **result.as_dict()}

    _print_table(titles, result.rows())
    click.echo(notes[0])
    for method, _status, line in flags:
        click.echo(f"flag: {method}: {line}")
    if not flags:
        click.echo("no flags: every method passed every check")
    out_dir = settings.out
    save_png(figure, out_dir / "compare.png")
    with atomic_write(out_dir / "compare.html") as handle:
        handle.write(page.encode("utf-8"))
    save_json(record, out_dir / "compare.json")
    click.echo(
        f"results in {out_dir}{'/' if not str(out_dir).endswith('/') else ''} "
        f"(compare.png, compare.html, compare.json); {time.perf_counter() - began:.1f} s in all"
    )
    sys.stdout.flush()


def _flag_notes(flags: list[tuple[str, str, str]]) -> list[str]:
    """One footnote per flagged method, its failed checks joined: the figure carries the flags too."""
    by_method: dict[str, list[str]] = {}
    for method, _status, line in flags:
        by_method.setdefault(method, []).append(line)
    if not by_method:
        return ["Flags: none; every method passed every check (trust.check, on the same maps)."]
    return [f"Flag, {method}: " + "; ".join(lines) for method, lines in by_method.items()]


def _short(row_name: str) -> tuple[str, str | None]:
    """A chart row's name for the terminal, and its unit: "finest detail (px)" → ("detail", "px")."""
    name, _, unit = row_name.partition(" (")
    return name.removeprefix("finest "), unit.rstrip(")") or None


_SHORT_GRADES = {"good": "good", "moderate": "mod", "poor": "poor", "n/a": "n/a"}


def _print_table(methods: list[str], rows: list[Any]) -> None:
    """One line per method: each row's value and grade, so the table fits ~100 columns."""
    heads = ["method", *(_short(r.name)[0] for r in rows)]
    lines = [heads]
    for j, method in enumerate(methods):
        cells = [f"{r.texts[j]} {_SHORT_GRADES[g]}" if (g := r.grade(j)) else r.texts[j] for r in rows]
        lines.append([method, *cells])
    widths = [max(len(line[k]) for line in lines) for k in range(len(heads))]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    units = ", ".join(f"{name} in {unit}" for name, unit in map(_short, (r.name for r in rows)) if unit)
    click.echo(f"({units}; grades good / mod(erate) / poor; needs is not graded)")
