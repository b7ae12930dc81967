"""``saliscope compare IMAGE``: every method side by side on one image, and the measured comparison chart."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .main import _load_model, _settings, cli, methods_option


@cli.command()
@click.argument("image", metavar="IMAGE")
@click.option("--model", "model_spec", default=None, metavar="M",
              help="'default' (EfficientNet-Lite0), torchvision:NAME, timm:NAME, or a weights file.")
@click.option("--arch", default=None, metavar="A", help="Architecture for a state-dict weights file.")
@click.option("--target", "-t", default="predicted", show_default=True, metavar="CLASS",
              help="'predicted', a class index, or a label name.")
@click.option("--timing-runs", type=click.IntRange(min=1), default=2, show_default=True,
              help="Explanations per method for the time row (the first warms up).")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("saliscope-compare"), show_default=True,
              help="Output folder.")
@methods_option("all")
def compare(image: str, model_spec: str | None, arch: str | None, target: str, timing_runs: int, out: Path,
            **options: Any) -> None:
    """Compare methods on IMAGE: maps side by side, and a chart of measured time, finest detail,
    stability, faithfulness and sanity, graded good / moderate / poor, with every flag.

    Writes OUT/compare.png (maps over the chart), OUT/compare.html (self-contained) and OUT/compare.json.
    """
    import torch

    from .. import registry
    from ..trust import compare_methods
    from ..viz import display_hint, panel, save_json, save_png
    from ..viz.files import atomic_write
    from ..viz.scorecard import figure_png, scorecard_figure, scorecard_html, stacked
    from . import pipeline

    settings = _settings(options, out=out, target=target, model_spec=model_spec)
    source = pipeline.preread(pipeline.file_sources([image])[0])
    model = _load_model(model_spec, arch, settings.device)
    labels = getattr(model, "labels", None)
    target_index = pipeline.resolve_target(settings.target, labels, pipeline.num_classes(model, settings.device))
    names = pipeline.applicable(model, settings, lambda line: click.echo(line, err=True))
    explainers = {name: registry.create(name, model, settings.options) for name in names}
    pipeline.check_layer(model, explainers, settings.device)

    photo = source.read()
    preprocess = model.preprocess
    box = tuple(float(v) for v in preprocess.crop_box(*photo.size))
    x = preprocess(photo).to(settings.device)
    with torch.no_grad():
        probs = torch.softmax(model(x).float(), dim=1)[0].cpu()
    cls = int(probs.argmax()) if target_index is None else target_index
    label = pipeline.label_of(labels, cls)
    click.echo(f"{source.path}: explaining class {cls} '{label}' ({float(probs[cls]):.1%}) with {len(names)} methods")

    def started(name: str) -> None:
        click.echo(f"  measuring {name} ...", err=True)

    result = compare_methods(model, x, explainers, cls, timing_runs=timing_runs, seed=settings.options.seed or 0,
                             on_method=started)

    titles = [registry.get(r.name).title for r in result.results]
    columns = []
    for r, title in zip(result.results, titles):
        hint = display_hint(r.name, settings.evidence)
        columns.append((title, r.explanation.saliency(hint.reduce, hint.evidence)[0, 0], hint.signed))
    heading = f"{Path(source.path).name}: {label} ({float(probs[cls]):.1%})"
    maps = panel(photo, columns, crop_box=box, title=heading, alpha=settings.alpha)
    chart = scorecard_figure(titles, result.rows(), title="measured comparison")
    figure = stacked([maps, chart])
    page = scorecard_html(titles, result.rows(), title=f"saliscope compare — {heading}",
                          figures=[("maps", figure_png(maps)), ("chart", figure_png(chart))],
                          flags=[(registry.get(m).title, s, line) for m, s, line in result.flags()],
                          notes=["Rows and thresholds: see the README, section 'Comparing methods'."])
    record = {"image": source.path, "class": cls, "label": label, "probability": float(probs[cls]),
              **result.as_dict()}

    _print_table(titles, result.rows())
    flags = result.flags()
    for method, _status, line in flags:
        click.echo(f"flag: {method}: {line}")
    if not flags:
        click.echo("no flags: every method passed every check")
    out_dir = settings.out
    save_png(figure, out_dir / "compare.png")
    with atomic_write(out_dir / "compare.html") as handle:
        handle.write(page.encode("utf-8"))
    save_json(record, out_dir / "compare.json")
    click.echo(f"results in {out_dir}{'/' if not str(out_dir).endswith('/') else ''} "
               "(compare.png, compare.html, compare.json)")
    sys.stdout.flush()


def _print_table(methods: list[str], rows: list[Any]) -> None:
    width = max(len(r.name) for r in rows)
    cells = [max(len(m), *(len(r.texts[j]) for r in rows)) for j, m in enumerate(methods)]
    click.echo(" " * width + "  " + "  ".join(m.ljust(c) for m, c in zip(methods, cells)))
    for r in rows:
        click.echo(r.name.ljust(width) + "  " + "  ".join(t.ljust(c) for t, c in zip(r.texts, cells)))
