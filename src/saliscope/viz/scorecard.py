"""The method comparison chart: rows are qualities, columns are methods, cells coloured by grade.

The chart only draws what it is given: each :class:`ScoreRow` carries the measured values, their grades
(decided by documented thresholds elsewhere, in :mod:`saliscope.trust.thresholds`) and the rule that
graded them. Colours come with the grade's word, so the chart reads without colour too. A row without
grades (a description, not a measurement) is drawn neutral and says so.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from .files import png_bytes

Grade = Literal["good", "moderate", "poor", "n/a"]
GRADE_COLOURS: dict[str, str] = {"good": "#b8e186", "moderate": "#fee08b", "poor": "#f4a582", "n/a": "#e0e0e0"}
UNGRADED_COLOUR = "#f4f4f4"
_GREY = "#505050"


@dataclass(frozen=True)
class ScoreRow:
    """One quality measured for every method.

    Attributes:
        name: the row's name, short (``"time (s / image)"``).
        texts: the value shown in each method's cell.
        grades: each cell's grade; None for a row that describes rather than measures (drawn neutral).
        rule: how the grades are decided (``"good ≤ 1 s, moderate ≤ 10 s, poor > 10 s"``).
        note: what is measured, in a few words; shown under the name.
        details: small print under each cell's value (``"ins 0.41 − del 0.24"``); empty for none.
    """

    name: str
    texts: Sequence[str]
    grades: Sequence[Grade] | None
    rule: str = ""
    note: str = ""
    details: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.grades is not None:
            if len(self.texts) != len(self.grades):
                raise ValueError(f"row {self.name!r}: {len(self.texts)} values but {len(self.grades)} grades")
            bad = [g for g in self.grades if g not in GRADE_COLOURS]
            if bad:
                raise ValueError(f"row {self.name!r}: unknown grade {bad[0]!r}")
        if self.details and len(self.details) != len(self.texts):
            raise ValueError(f"row {self.name!r}: {len(self.texts)} values but {len(self.details)} details")

    @property
    def graded(self) -> bool:
        return self.grades is not None

    def grade(self, j: int) -> Grade | None:
        return None if self.grades is None else self.grades[j]

    def detail(self, j: int) -> str:
        return self.details[j] if self.details else ""

    def colour(self, j: int) -> str:
        return UNGRADED_COLOUR if self.grades is None else GRADE_COLOURS[self.grades[j]]

    def caption(self) -> str:
        """The note and the rule in one line (an ungraded row says it is not graded)."""
        rule = self.rule if self.graded else (self.rule or "not graded")
        return "; ".join(p for p in (self.note, rule) if p)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "texts": list(self.texts),
            "grades": None if self.grades is None else list(self.grades),
            "details": list(self.details),
            "rule": self.rule,
            "note": self.note,
        }


def _check(methods: Sequence[str], rows: Sequence[ScoreRow], subtitles: Sequence[str] = ()) -> None:
    for row in rows:
        if len(row.texts) != len(methods):
            raise ValueError(f"row {row.name!r} has {len(row.texts)} cells for {len(methods)} methods")
    if subtitles and len(subtitles) != len(methods):
        raise ValueError(f"{len(subtitles)} subtitles for {len(methods)} methods")


# Average glyph widths in inches per point of font size, to wrap text to a width before drawing it:
# matplotlib's own wrap=True wraps to the figure's edge, not to a cell.
_CHAR_IN_PER_PT = 0.0075


def _wrap(text: str, width_in: float, size_pt: float) -> list[str]:
    return textwrap.wrap(text, max(8, int(width_in / (size_pt * _CHAR_IN_PER_PT)))) if text else []


def blocks_of(n: int, *, width: float, label_width: float, min_cell: float) -> list[range]:
    """Split ``n`` method columns into as few blocks as keep every cell at least ``min_cell`` wide, evenly."""
    fit = max(1, int((width - label_width) / min_cell))
    count = -(-n // fit)
    size = -(-n // count)
    return [range(i, min(n, i + size)) for i in range(0, n, size)]


def scorecard_figure(
    methods: Sequence[str],
    rows: Sequence[ScoreRow],
    *,
    title: str | None = None,
    subtitles: Sequence[str] = (),
    subtitle_name: str = "",
    footnotes: Sequence[str] = (),
    width: float | None = None,
    label_width: float = 3.0,
    cell_width: float = 1.7,
    min_cell: float = 1.45,
    dpi: float = 100.0,
) -> Figure:
    """A table figure: one column per method, one row per quality, each cell its value and grade.

    Args:
        methods: the column headings.
        rows: the rows, top to bottom.
        title: centred over the whole figure.
        subtitles: one small line under each method's heading (e.g. which map it was scored on), named by
            ``subtitle_name`` in the label column.
        footnotes: paragraphs under the chart, wrapped to its width.
        width: the figure's width in inches (e.g. the maps panel's, so the two line up); the cells share
            what the label column leaves, and methods wrap into further blocks when cells would get narrower
            than ``min_cell``. None: ``cell_width`` per method, one block.
    """
    _check(methods, rows, subtitles)
    n = max(1, len(methods))
    if width is None:
        width = label_width + cell_width * n
    blocks = blocks_of(n, width=width, label_width=label_width, min_cell=min_cell)
    cell = (width - label_width) / len(blocks[0])
    label_lines = [_wrap(r.caption(), label_width - 0.2, 7.0)[:3] for r in rows]
    row_heights = [max(0.78, 0.34 + 0.13 * len(lines)) for lines in label_lines]
    sub_lines = [_wrap(s, cell - 0.1, 7.0)[:2] for s in subtitles] if subtitles else []
    header = 0.4 + 0.13 * max((len(s) for s in sub_lines), default=0)
    notes = [line for note in footnotes for line in (_wrap(note, width - 0.4, 8.0) or [""])]
    title_h = 0.55 if title else 0.15
    block_h = header + sum(row_heights)
    height = title_h + len(blocks) * block_h + (len(blocks) - 1) * 0.25 + 0.15 + 0.17 * len(notes) + 0.1 * bool(notes)

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)  # inches from the top: the layout reads top to bottom
    ax.set_axis_off()
    if title:
        ax.text(width / 2, 0.3, title, ha="center", va="center", fontsize=12, weight="bold")
    y = title_h
    for block in blocks:
        if subtitle_name:
            ax.text(0.12, y + 0.36, subtitle_name, ha="left", va="top", fontsize=7, color=_GREY)
        y = _draw_block(ax, block, methods, rows, sub_lines, label_lines, row_heights, y, header, label_width, cell)
        y += 0.25
    y += 0.0 if not notes else -0.1
    for line in notes:
        ax.text(0.2, y, line, ha="left", va="top", fontsize=8, color=_GREY)
        y += 0.17
    return figure


def _draw_block(
    ax: Any,
    block: range,
    methods: Sequence[str],
    rows: Sequence[ScoreRow],
    sub_lines: list[list[str]],
    label_lines: list[list[str]],
    row_heights: list[float],
    y: float,
    header: float,
    label_width: float,
    cell: float,
) -> float:
    for k, j in enumerate(block):
        x = label_width + (k + 0.5) * cell
        ax.text(x, y + 0.22, methods[j], ha="center", va="center", fontsize=9.5 if cell >= 1.8 else 8.5, weight="bold")
        if sub_lines:
            ax.text(
                x, y + 0.36, "\n".join(sub_lines[j]), ha="center", va="top", fontsize=7, color=_GREY, linespacing=1.1
            )
    y += header
    for row, lines, h in zip(rows, label_lines, row_heights, strict=True):
        ax.text(0.12, y + 0.1, row.name, ha="left", va="top", fontsize=9.5, weight="bold")
        if lines:
            ax.text(0.12, y + 0.3, "\n".join(lines), ha="left", va="top", fontsize=7, color=_GREY, linespacing=1.1)
        for k, j in enumerate(block):
            x0 = label_width + k * cell
            ax.add_patch(
                Rectangle((x0 + 0.03, y + 0.03), cell - 0.06, h - 0.06, facecolor=row.colour(j), edgecolor="white")
            )
            small = [s for s in (row.detail(j), row.grade(j) or "") if s]
            value_y = y + h / 2 - 0.08 * len(small)
            ax.text(x0 + cell / 2, value_y, row.texts[j], ha="center", va="center", fontsize=11)
            if small:
                ax.text(
                    x0 + cell / 2,
                    value_y + 0.14,
                    "\n".join(small),
                    ha="center",
                    va="top",
                    fontsize=7,
                    color=_GREY,
                    linespacing=1.15,
                )
        y += h
    return y


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222}
h1{font-size:1.4rem} h2{font-size:1.1rem;margin-top:2rem} img{max-width:100%}
table{border-collapse:collapse;margin:1rem 0} th,td{padding:.45rem .7rem;text-align:center;border:2px solid #fff}
th{background:#f3f3f3} td.name{text-align:left;background:#f7f7f7;font-weight:600;max-width:22rem}
td small,th small{display:block;color:#555;font-size:.72rem;font-weight:400} .rules{color:#555;font-size:.85rem}
ul.flags li{margin:.2rem 0} .fail{color:#b2182b} .pass{color:#1b7837} .skipped{color:#777}
"""


def scorecard_html(
    methods: Sequence[str],
    rows: Sequence[ScoreRow],
    *,
    title: str,
    subtitles: Sequence[str] = (),
    subtitle_name: str = "",
    figures: Sequence[tuple[str, bytes]] = (),
    flags: Sequence[tuple[str, str, str]] = (),
    notes: Sequence[str] = (),
) -> str:
    """A self-contained HTML page: PNG figures embedded (first: the picture is what a reader looks at), the
    chart as a table under them, notes, flag lines.

    ``subtitles`` go under the method headings (``subtitle_name`` says what they are); ``figures`` are
    ``(caption, png bytes)``; ``flags`` are ``(method, status, line)`` with status ``"pass" | "fail" | "skipped"``.
    """
    _check(methods, rows, subtitles)
    e = html.escape
    head = "".join(
        f"<th>{e(m)}{f'<small>{e(subtitles[j])}</small>' if subtitles else ''}</th>" for j, m in enumerate(methods)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td style="background:{row.colour(j)}">{e(t)}'
            + "".join(f"<small>{e(s)}</small>" for s in (row.detail(j), row.grade(j) or "") if s)
            + "</td>"
            for j, t in enumerate(row.texts)
        )
        body.append(f'<tr><td class="name">{e(row.name)}<small>{e(row.caption())}</small></td>{cells}</tr>')
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        *(f'<img alt="{e(caption)}" src="{png_data_uri(png)}">' for caption, png in figures),
        f"<table><tr><th><small>{e(subtitle_name)}</small></th>{head}</tr>{''.join(body)}</table>",
    ]
    for note in notes:
        parts.append(f'<p class="rules">{e(note)}</p>')
    if flags:
        items = "".join(f'<li class="{e(s)}"><b>{e(m)}</b> [{e(s)}] {e(line)}</li>' for m, s, line in flags)
        parts.append(f'<h2>Flags</h2><ul class="flags">{items}</ul>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def stacked(figures: Sequence[Figure], *, background: str = "white") -> Image.Image:
    """Render figures and stack them top to bottom, centred, into one image (the panel over the chart)."""
    images = [Image.open(io.BytesIO(png_bytes(f))).convert("RGB") for f in figures]
    width = max(im.width for im in images)
    canvas = Image.new("RGB", (width, sum(im.height for im in images)), background)
    y = 0
    for im in images:
        canvas.paste(im, ((width - im.width) // 2, y))
        y += im.height
    return canvas
