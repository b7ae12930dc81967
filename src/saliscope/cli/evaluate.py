"""``saliscope evaluate IMAGE... --method ...``: every metric per image and method, to JSON and CSV, flags printed."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import click

from .common import EXIT_PARTIAL, build_settings, load_cli_model, method_options, model_options


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
    "--metrics",
    "metric_list",
    default="all",
    show_default=True,
    metavar="NAMES",
    help="Comma-separated metrics (deletion, insertion, morf, lerf, road, faithfulness-correlation, "
    "counterfactual, max-sensitivity, avg-sensitivity, consistency, sparseness, entropy, resolution, "
    "sanity, random-logit, completeness) or 'all'.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=Path("saliscope-eval"),
    show_default=True,
    help="Output folder.",
)
@method_options
@click.pass_context
def evaluate(
    ctx: click.Context,
    images: tuple[str, ...],
    model_spec: str | None,
    arch: str | None,
    target: str,
    metric_list: str,
    out: Path,
    **options: Any,
) -> None:
    """Measure how far each method's map can be trusted on IMAGE... (files or folders of images).

    Writes OUT/metrics.json (every metric's full result, the flags) and OUT/metrics.csv (one row per image
    and method, each metric's headline number) and prints each method's flags.
    """
    import torch

    from .. import registry
    from ..core.errors import SaliscopeError
    from ..core.targets import logits_of
    from ..trust import check, headline, metric_names
    from ..trust import evaluate as run_metrics
    from ..viz import save_json
    from ..viz.files import atomic_write
    from . import pipeline

    names = metric_names(metric_list)
    settings = build_settings(options, out=out, target=target, model_spec=model_spec)
    sources = pipeline.file_sources(images)
    if len(sources) == 1:
        sources = [pipeline.preread(sources[0])]
    model = load_cli_model(model_spec, arch, settings.device)
    labels = getattr(model, "labels", None)
    target_index = pipeline.resolve_target(settings.target, labels, pipeline.num_classes(model, settings.device))
    methods = pipeline.applicable(model, settings, lambda line: click.echo(line, err=True))
    explainers = {name: registry.create(name, model, settings.options) for name in methods}
    pipeline.check_layer(model, explainers, settings.device)
    seed = settings.options.seed or 0

    records: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    failures: list[tuple[str, str]] = []
    for source in sources:
        try:
            x = model.preprocess(source.read()).to(settings.device)
            with torch.no_grad():
                cls = int(logits_of(model(x)).argmax()) if target_index is None else target_index
            click.echo(f"{source.path}: class {cls} '{pipeline.label_of(labels, cls)}'")
            image_records, image_rows = [], []
            for name, explainer in explainers.items():
                e = explainer.explain(x, cls)
                results = run_metrics(model, x, explainer, e, metrics=names, seed=seed)
                # The flags reuse what the metrics measured with the same settings (deletion, shift, sanity).
                report = check(e, model, x, explainer=explainer, seed=seed, known=results)
                row: dict[str, Any] = {
                    "image": source.path,
                    "method": name,
                    "class": cls,
                    "seconds": round(e.cost.seconds, 4),
                }
                row.update({metric: headline(r)[0] for metric, r in results.items()})
                row["flags"] = "; ".join(f"{v.check}: {v.reason}" for v in report.failures)
                image_rows.append(row)
                image_records.append(
                    {
                        "method": name,
                        "explain_cost": e.cost.as_dict(),
                        "metrics": {m: r.as_dict() for m, r in results.items()},
                        "checks": report.as_dict(),
                    }
                )
                flags = report.failures
                click.echo(f"  {name}: " + (f"{len(flags)} flag(s)" if flags else "no flags"))
                for v in flags:
                    click.echo(f"    flag: {v.check}: {v.reason}")
            records.append(
                {"image": source.path, "class": cls, "label": pipeline.label_of(labels, cls), "methods": image_records}
            )
            rows.extend(image_rows)
        except SaliscopeError as exc:
            if len(sources) == 1:
                raise
            failures.append((source.path, pipeline.one_line(str(exc))))
            click.echo(f"error: {source.path}: {pipeline.one_line(str(exc))}", err=True)
    if records:
        save_json(
            {"metrics": list(names), "images": records, "failures": [{"path": p, "error": e} for p, e in failures]},
            settings.out / "metrics.json",
        )
        columns = ["image", "method", "class", "seconds", *names, "flags"]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        with atomic_write(settings.out / "metrics.csv") as handle:
            handle.write(text.getvalue().encode("utf-8"))
        click.echo(f"results in {settings.out}{os.sep} (metrics.json, metrics.csv)")
    if failures:
        click.echo(f"{len(failures)} of {len(sources)} images failed:", err=True)
        for path, reason in failures:
            click.echo(f"  {path}: {reason}", err=True)
        ctx.exit(EXIT_PARTIAL)
