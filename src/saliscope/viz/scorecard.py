"""The method comparison chart: rows are qualities, columns are methods, cells coloured by grade.

The chart only draws what it is given: each :class:`ScoreRow` carries the measured values, their grades
(decided by documented thresholds elsewhere, in :mod:`saliscope.trust.thresholds`) and the rule that
graded them. Colours come with the grade's word, so the chart reads without colour too.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

Grade = Literal["good", "moderate", "poor", "n/a"]
GRADE_COLOURS: dict[str, str] = {"good": "#b8e186", "moderate": "#fee08b", "poor": "#f4a582", "n/a": "#e0e0e0"}


@dataclass(frozen=True)
class ScoreRow:
    """One quality measured for every method: its name, per-method text and grade, and the grading rule."""

    name: str
    texts: Sequence[str]
    grades: Sequence[Grade]
    rule: str = ""

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.grades):
            raise ValueError(f"row {self.name!r}: {len(self.texts)} values but {len(self.grades)} grades")
        bad = [g for g in self.grades if g not in GRADE_COLOURS]
        if bad:
            raise ValueError(f"row {self.name!r}: unknown grade {bad[0]!r}")


def _check(methods: Sequence[str], rows: Sequence[ScoreRow]) -> None:
    for row in rows:
        if len(row.texts) != len(methods):
            raise ValueError(f"row {row.name!r} has {len(row.texts)} cells for {len(methods)} methods")


def scorecard_figure(
    methods: Sequence[str], rows: Sequence[ScoreRow], *, title: str | None = None, cell_width: float = 1.55,
    dpi: float = 100.0,
) -> Figure:
    """A table figure: one column per method, one row per quality, each cell its value and grade."""
    _check(methods, rows)
    label_width = 2.6
    figure = Figure(figsize=(label_width + cell_width * len(methods), 0.62 * (len(rows) + 1) + (0.5 if title else 0.1)
                             + 0.3 * any(r.rule for r in rows)), dpi=dpi)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(-label_width / cell_width, len(methods))
    top = len(rows) + 1 + (0.7 if title else 0.0)
    bottom = -0.5 if any(r.rule for r in rows) else 0.0
    ax.set_ylim(bottom, top)
    ax.set_axis_off()
    if title:
        ax.text(len(methods) / 2 - label_width / cell_width / 2, len(rows) + 1.35, title, ha="center", va="center",
                fontsize=11, weight="bold")
    for j, method in enumerate(methods):
        ax.text(j + 0.5, len(rows) + 0.5, method, ha="center", va="center", fontsize=8.5, weight="bold", wrap=True)
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        ax.text(-label_width / cell_width + 0.08, y + 0.5, row.name, ha="left", va="center", fontsize=9)
        for j, (text, grade) in enumerate(zip(row.texts, row.grades)):
            ax.add_patch(_cell(j, y, GRADE_COLOURS[grade]))
            ax.text(j + 0.5, y + 0.6, text, ha="center", va="center", fontsize=9)
            ax.text(j + 0.5, y + 0.25, grade, ha="center", va="center", fontsize=6.5, color="#444444")
    rules = "; ".join(f"{r.name}: {r.rule}" for r in rows if r.rule)
    if rules:
        ax.text(-label_width / cell_width + 0.08, -0.25, rules, ha="left", va="center", fontsize=6, color="#444444",
                wrap=True)
    return figure


def _cell(x: float, y: float, colour: str):  # type: ignore[no-untyped-def]
    from matplotlib.patches import Rectangle

    return Rectangle((x + 0.03, y + 0.05), 0.94, 0.9, facecolor=colour, edgecolor="white")


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(figure: Figure, dpi: float | None = None) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi or figure.dpi)
    return buffer.getvalue()


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem} img{max-width:100%}
table{border-collapse:collapse;margin:1rem 0} th,td{padding:.45rem .7rem;text-align:center;border:2px solid #fff}
th{background:#f3f3f3} td.name{text-align:left;background:#f7f7f7;font-weight:600}
td small{display:block;color:#555;font-size:.72rem} .rules{color:#555;font-size:.85rem}
ul.flags li{margin:.2rem 0} .fail{color:#b2182b} .pass{color:#1b7837} .skipped{color:#777}
"""


def scorecard_html(
    methods: Sequence[str],
    rows: Sequence[ScoreRow],
    *,
    title: str,
    figures: Sequence[tuple[str, bytes]] = (),
    flags: Sequence[tuple[str, str, str]] = (),
    notes: Sequence[str] = (),
) -> str:
    """A self-contained HTML page: the chart as a table, PNG figures embedded, flag lines, notes.

    ``figures`` are ``(caption, png bytes)``; ``flags`` are ``(method, status, line)`` with status
    ``"pass" | "fail" | "skipped"``.
    """
    _check(methods, rows)
    e = html.escape
    head = "".join(f"<th>{e(m)}</th>" for m in methods)
    body = []
    for row in rows:
        cells = "".join(
            f'<td style="background:{GRADE_COLOURS[g]}">{e(t)}<small>{e(g)}</small></td>'
            for t, g in zip(row.texts, row.grades)
        )
        body.append(f'<tr><td class="name">{e(row.name)}</td>{cells}</tr>')
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<table><tr><th></th>{head}</tr>{''.join(body)}</table>",
    ]
    rules = [f"<li><b>{e(r.name)}</b>: {e(r.rule)}</li>" for r in rows if r.rule]
    if rules:
        parts.append(f'<ul class="rules">{"".join(rules)}</ul>')
    if flags:
        items = "".join(f'<li class="{e(s)}"><b>{e(m)}</b> [{e(s)}] {e(line)}</li>' for m, s, line in flags)
        parts.append(f'<h2>Flags</h2><ul class="flags">{items}</ul>')
    for caption, png in figures:
        parts.append(f'<h2>{e(caption)}</h2><img alt="{e(caption)}" src="{png_data_uri(png)}">')
    for note in notes:
        parts.append(f'<p class="rules">{e(note)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def stacked(figures: Sequence[Figure], *, background: str = "white") -> Image.Image:
    """Render figures and stack them top to bottom, centred, into one image (the panel over the chart)."""
    images = [Image.open(io.BytesIO(figure_png(f))).convert("RGB") for f in figures]
    width = max(im.width for im in images)
    canvas = Image.new("RGB", (width, sum(im.height for im in images)), background)
    y = 0
    for im in images:
        canvas.paste(im, ((width - im.width) // 2, y))
        y += im.height
    return canvas
