"""The audit's outputs: ``summary.json`` (every number) and ``report.html`` (one self-contained page).

The page embeds every picture as a base64 PNG, so it can be mailed or archived as one file. Per class:
the verdict line; the class's mean image (the model's view), its mean saliency map over it and the
map's spread (standard deviation over the class's images); a table of every region measured; a chart
of the region masses and of how the images' masses in the verdict's region are distributed; and the
most concentrated images as thumbnails with their maps, the region outlined.

Colours come from matplotlib colormaps through :func:`saliscope.viz.overlay` (``inferno``: saliency is
unsigned mass); the bars and histograms are plain CSS. Both files are written atomically: each is
complete or absent.
"""

from __future__ import annotations

import base64
import html
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from ..core.errors import SaliscopeError
from ..core.views import FlatMapWarning
from ..models.preprocess import Preprocess
from ..viz.files import atomic_write, png_bytes, save_json
from ..viz.overlay import overlay
from .dataset import Folder
from .findings import ClassAnalysis
from .regions import Box
from .settings import AuditSettings
from .stats import MASS_BINS, AuditStats
from .store import decode_map
from .verdicts import RegionFinding

if TYPE_CHECKING:
    from torch import nn

SUMMARY = "summary.json"
REPORT = "report.html"
_SHOW = 192  # pixels per side of the mean images on the page
_THUMB = 128  # pixels per side of a thumbnail
_OUTLINE = (0, 230, 255)  # the region's outline: cyan stands apart from inferno's black-red-yellow


# ----- summary.json -------------------------------------------------------------------------------------


def build_summary(
    *,
    config: dict[str, Any],
    folder: Folder,
    stats: AuditStats,
    analyses: list[ClassAnalysis],
    failures: list[tuple[str, str]],
    seen: dict[str, float],
    warnings: list[str],
    settings: AuditSettings,
    run: dict[str, Any],
    model: nn.Module,
    model_spec: str | None,
    preprocess: Preprocess,
) -> dict[str, Any]:
    """Everything the audit found, JSON-plain. ``run`` (timings) is the only part that varies between
    two audits of the same data with the same settings."""
    from .. import __version__

    classes = []
    for a in analyses:
        v = a.verdict
        s = stats.per_class[v.name]
        classes.append(
            {
                "name": v.name,
                "status": v.status,
                "line": v.line,
                "images": v.images,
                "measured": v.measured,
                "flat": s.flat,
                "accuracy": None if s.judged == 0 else s.correct / s.judged,
                "flagged": list(v.flagged),
                "lead": None if v.lead is None else v.lead.name,
                "regions": [_finding(f, settings) for f in v.findings],
                "mean_map": _rounded(s.maps.mean) if s.maps.count else None,
                "std_map": _rounded(s.maps.std()) if s.maps.count else None,
                "suspicious": [
                    {
                        "key": r.key,
                        "mass": r.mass,
                        "explained": r.record.get("explained"),
                        "score": r.record.get("score"),
                    }
                    for r in a.suspicious
                ],
            }
        )
    return {
        "saliscope_version": __version__,
        "data_dir": config["data_dir"],
        "model": {
            "name": config["model"],
            "spec": model_spec,
            "input_size": preprocess.size,
            "labels": len(getattr(model, "labels", None) or ()) or None,
            "preprocess": config["preprocess"],
        },
        "method": config["method"],
        "method_params": config["method_params"],
        "target": config["target"],
        "settings": {
            "grid": settings.grid,
            "border": settings.border,
            "corner": settings.corner,
            "spot": list(settings.spot),
            "region": None if settings.region is None else list(settings.region),
            "evidence": settings.evidence,
            "top_n": settings.top_n,
            "limit": settings.limit,
            "thresholds": settings.thresholds.as_dict(),
        },
        "images": {
            "found": len(folder.items),
            "audited": stats.images,
            "failed": len(failures),
            "flat": sum(s.flat for s in stats.per_class.values()),
            "ignored": len(folder.ignored),
        },
        "visibility": seen,
        "verdicts": [a.verdict.line for a in analyses],
        "flagged": [a.verdict.name for a in analyses if a.verdict.status == "shortcut"],
        "classes": classes,
        "failures": [{"path": k, "error": e} for k, e in failures],
        "ignored": [{"path": k, "reason": r} for k, r in folder.ignored],
        "warnings": warnings,
        "run": run,
    }


def _finding(f: RegionFinding, settings: AuditSettings) -> dict[str, Any]:
    why = f.failed(settings.thresholds)
    return {
        "name": f.name,
        "kind": f.kind,
        "box": list(f.box),
        "outside": f.outside,
        "area": f.area,
        "mass": f.mass,
        "spread": f.spread,
        "excess": f.excess,
        "share": f.share,
        "others": f.others,
        "contrast": f.contrast,
        "flagged": why is None,
        "why_not": why,
        "histogram": list(f.histogram),
    }


def _rounded(a: np.ndarray) -> list[list[float]]:
    return np.round(a, 6).tolist()


# ----- writing ----------------------------------------------------------------------------------------


def write_outputs(
    out: Path,
    summary: dict[str, Any],
    analyses: list[ClassAnalysis],
    stats: AuditStats,
    root: Path,
    preprocess: Preprocess,
) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``report.html`` into ``out`` (atomically); returns their paths."""
    with warnings.catch_warnings():
        # A spread of zero (every image alike) or an all-zero mean is shown as the bare image, not warned.
        warnings.simplefilter("ignore", FlatMapWarning)
        page = render_html(summary, analyses, stats, root, preprocess)
    summary_path, report_path = out / SUMMARY, out / REPORT
    try:
        save_json(summary, summary_path)
        with atomic_write(report_path) as handle:
            handle.write(page.encode("utf-8"))
    except OSError as exc:
        raise SaliscopeError(
            f"cannot write the audit report in {out}: {exc.strerror or exc}", "check --out and free disk space"
        ) from exc
    return summary_path, report_path


# ----- the page ---------------------------------------------------------------------------------------


_EVEN_SCALE = 4.0  # mean-map value shown in full colour, in multiples of an even spread


def render_html(
    summary: dict[str, Any],
    analyses: list[ClassAnalysis],
    stats: AuditStats,
    root: Path,
    preprocess: Preprocess,
) -> str:
    """The report as one HTML string, pictures embedded."""
    e = html.escape
    size = (preprocess.size, preprocess.size)
    parts = [_HEAD.format(title=e(f"saliscope audit: {Path(summary['data_dir']).name}"))]
    imgs = summary["images"]
    parts.append(f"<h1>Shortcut audit of <code>{e(summary['data_dir'])}</code></h1>")
    parts.append(
        f"<p>Model <code>{e(str(summary['model']['name']))}</code>, method <b>{e(summary['method'])}</b>, explaining"
        f" each image's {'predicted class' if summary['target'] == 'predicted' else 'folder class'};"
        f" {imgs['audited']} images audited, {imgs['failed']} unreadable, {imgs['flat']} with a flat map,"
        f" {imgs['ignored']} files ignored.</p>"
    )
    for note in summary["warnings"]:
        parts.append(f"<p class='warn'>warning: {e(note)}</p>")
    parts.append("<h2>Verdicts</h2><ul class='verdicts'>")
    for c in summary["classes"]:
        parts.append(f"<li class='{c['status']}'><a href='#c-{e(c['name'])}'>{e(c['line'])}</a></li>")
    parts.append("</ul>")
    for a, c in zip(analyses, summary["classes"], strict=True):
        parts.append(_class_section(a, c, stats, root, preprocess, size))
    parts.append(_files_section(summary))
    parts.append(_settings_section(summary))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _class_section(
    a: ClassAnalysis, c: dict[str, Any], stats: AuditStats, root: Path, preprocess: Preprocess, size: tuple[int, int]
) -> str:
    e = html.escape
    v = a.verdict
    s = stats.per_class[v.name]
    out = [f"<section id='c-{e(v.name)}'><h2>class {e(v.name)}</h2><p class='{v.status}'>{e(v.line)}</p>"]
    accuracy = "" if c["accuracy"] is None else f", predicted as its own class in {c['accuracy']:.0%}"
    out.append(f"<p>{v.images} images, {s.flat} with a flat map{accuracy}.</p>")
    mean = s.mean_image()
    if mean is not None and s.maps.count:
        box = None if v.lead is None else v.lead.box
        base = _to_pil(mean).resize((_SHOW, _SHOW), Image.Resampling.BICUBIC)
        # Mass maps sum to 1 over the grid's cells; times the cell count they read "× an even spread", and
        # one fixed scale for every class lets colour compare classes: an even map stays faint.
        even = float(stats.grid * stats.grid)
        pictures = [
            ("mean image (the model's view)", base),
            (
                f"mean saliency map (full colour: {_EVEN_SCALE:g}× an even spread)",
                _outlined(overlay(base, s.maps.mean * even, signed=False, vmax=_EVEN_SCALE), box, v.lead),
            ),
            (
                "spread over images (same scale)",
                _outlined(overlay(base, s.maps.std() * even, signed=False, vmax=_EVEN_SCALE), box, v.lead),
            ),
        ]
        out.append("<div class='row'>" + "".join(_figure(img, caption) for caption, img in pictures) + "</div>")
    if v.findings:
        out.append(_region_table(c["regions"], v.lead, size))
        if v.lead is not None:
            out.append(_histogram(v.lead))
    if a.suspicious and v.lead is not None:
        out.append(f"<h3>Most concentrated in the {e(v.lead.describe(size))}</h3><div class='row'>")
        for ranked in a.suspicious:
            out.append(_thumbnail(ranked.key, ranked.mass, ranked.record, root, preprocess, v.lead, stats.grid))
        out.append("</div>")
    out.append("</section>")
    return "\n".join(out)


def _region_table(rows: list[dict[str, Any]], lead: RegionFinding | None, size: tuple[int, int]) -> str:
    """Every region measured, with a bar of its mean mass and a tick at its area (an even map's mass)."""
    e = html.escape
    out = [
        "<table><tr><th>region</th><th>area</th><th>mean mass</th><th>mass (bar) vs area (tick)</th>"
        "<th>spread</th><th>excess</th><th>images concentrating</th><th>other classes</th><th>flags?</th></tr>"
    ]
    for r in rows:
        others = "–" if r["others"] is None else f"{r['others']:.1%}"
        flag = "<b>yes</b>" if r["flagged"] else e(r["why_not"] or "")
        mark = " class='lead'" if lead is not None and r["name"] == lead.name else ""
        bar = (
            f"<div class='bar'><span style='width:{100 * min(max(r['mass'], 0), 1):.1f}%'></span>"
            f"<i style='left:{100 * r['area']:.1f}%'></i></div>"
        )
        out.append(
            f"<tr{mark}><td>{e(r['name'])}</td><td>{r['area']:.1%}</td><td>{r['mass']:.1%}</td><td>{bar}</td>"
            f"<td>{r['spread']:.1%}</td><td>{r['excess']:.2f}</td><td>{r['share']:.0%}</td>"
            f"<td>{others}</td><td>{flag}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def _histogram(lead: RegionFinding) -> str:
    """How the class's images' masses in the lead region spread over tenths of [0, 1], as CSS columns."""
    counts = list(lead.histogram)
    top = max(max(counts), 1)
    columns = "".join(
        f"<div title='{c} images with {k / MASS_BINS:.0%}–{(k + 1) / MASS_BINS:.0%} in {html.escape(lead.name)}'>"
        f"<span style='height:{100 * c / top:.0f}%'></span><small>{c}</small></div>"
        for k, c in enumerate(counts)
    )
    return (
        f"<p>Images by their own mass in the {html.escape(lead.name)} (tenths, 0% → 100%):</p>"
        f"<div class='hist'>{columns}</div>"
    )


def _thumbnail(
    key: str, mass: float, record: dict[str, Any], root: Path, preprocess: Preprocess, lead: RegionFinding, grid: int
) -> str:
    from ..io import load_image

    caption = f"{key} — {mass:.0%} in {lead.name}"
    try:
        view = preprocess.to_pil(preprocess(load_image(root / key)))
    except SaliscopeError as exc:
        text = f"{html.escape(caption)}: cannot re-read ({html.escape(str(exc))})"
        return f"<figure class='missing'><figcaption>{text}</figcaption></figure>"
    # Drawn at thumbnail size, small inputs scaled up: the map is resampled smoothly and the outline is thin.
    scale = _THUMB / max(view.size)
    view = view.resize(
        (max(1, round(view.width * scale)), max(1, round(view.height * scale))),
        Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS,
    )
    return _figure(_outlined(overlay(view, decode_map(record["map"], grid), signed=False), lead.box, lead), caption)


def _outlined(image: Image.Image, box: Box | None, finding: RegionFinding | None) -> Image.Image:
    """``image`` with the region's box drawn (for the border, its inner edge)."""
    if box is None or finding is None:
        return image
    out = image.copy()
    w, h = out.size
    x0, y0, x1, y1 = box
    ImageDraw.Draw(out).rectangle((x0 * w, y0 * h, x1 * w - 1, y1 * h - 1), outline=_OUTLINE, width=2)
    return out


def _to_pil(mean: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(mean.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8))


def _figure(image: Image.Image, caption: str) -> str:
    data = base64.b64encode(png_bytes(image)).decode("ascii")
    return (
        f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _files_section(summary: dict[str, Any]) -> str:
    e = html.escape
    out = []
    if summary["failures"]:
        out.append(f"<h2>Unreadable files ({len(summary['failures'])}, skipped)</h2><table>")
        out.extend(
            f"<tr><td><code>{e(f['path'])}</code></td><td>{e(f['error'])}</td></tr>" for f in summary["failures"]
        )
        out.append("</table>")
    if summary["ignored"]:
        out.append(f"<details><summary>Ignored files ({len(summary['ignored'])})</summary><table>")
        out.extend(
            f"<tr><td><code>{e(f['path'])}</code></td><td>{e(f['reason'])}</td></tr>" for f in summary["ignored"]
        )
        out.append("</table></details>")
    return "\n".join(out)


def _settings_section(summary: dict[str, Any]) -> str:
    e = html.escape
    s = summary["settings"]
    t = s["thresholds"]
    return (
        "<h2>How to read this</h2><p>Saliency <i>mass</i> is the share of a map's positive evidence lying in a"
        " region. <i>Excess</i> = (mass − area) / (1 − area): 0 for an evenly spread map, 1 for a map wholly in"
        f" the region. A region flags a class when the class's mean excess is at least {t['min_excess']}, at"
        f" least {t['min_share']:.0%} of its images reach that excess on their own ({t['min_spot_share']:.0%} for"
        f" a class's fixed spot), and — for the spot only — its mass there beats the other classes' by"
        f" {t['min_contrast']}. Classes with fewer than"
        f" {t['min_images']} usable maps are not judged.</p>"
        f"<p>Settings: border {s['border']:.0%} of each side, corners {s['corner']:.0%} of each side,"
        f" edges as deep as a corner, spot windows {', '.join(f'{v:.0%}' for v in s['spot'])} of each side,"
        f" maps stored on a {s['grid']}×{s['grid']} grid, method parameters"
        f" <code>{e(str(summary['method_params']))}</code>.</p>"
    )


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 1.5em auto; padding: 0 1em; color: #222; }}
code {{ font-size: 0.9em; }}
.verdicts li {{ margin: 0.3em 0; }}
.shortcut {{ color: #b2182b; font-weight: 600; }}
.clear {{ color: #1a7837; }}
.too-few {{ color: #777; }}
.warn {{ background: #fff3cd; padding: 0.5em; border-radius: 4px; }}
.row {{ display: flex; flex-wrap: wrap; gap: 0.8em; }}
figure {{ margin: 0; }}
figcaption {{ font-size: 0.75em; max-width: 200px; word-break: break-all; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }}
tr.lead {{ background: #fde0dd; }}
.bar {{ position: relative; width: 160px; height: 0.9em; background: #eee; }}
.bar span {{ position: absolute; left: 0; top: 0; bottom: 0; background: #d7301f; }}
.bar i {{ position: absolute; top: -2px; bottom: -2px; width: 2px; background: #000; }}
.hist {{ display: flex; align-items: flex-end; gap: 2px; height: 80px; }}
.hist div {{ width: 28px; height: 100%; display: flex; flex-direction: column; justify-content: flex-end; }}
.hist span {{ display: block; background: #d7301f; }}
.hist small {{ font-size: 0.65em; text-align: center; }}
section {{ border-top: 1px solid #ddd; margin-top: 1.5em; }}
</style></head><body>"""
