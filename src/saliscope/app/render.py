"""What the explorer's page shows, as HTML: one card per method (its map over the photo, a colour key, the
verdicts of its checks, what it cost), the status line, and the page's style sheet.

Pictures are embedded as ``data:`` URIs (JPEG for photos), so a card never points at a file on the server.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from ..trust.checks import CheckReport
from ..trust.comparison import view_label
from ..viz.colormaps import get_cmap
from ..viz.display import DisplayHint
from ..viz.verdict_page import jpeg_uri

_MARKS = {"pass": "✓", "fail": "✗", "skipped": "–"}


@dataclass(frozen=True)
class Card:
    """One method's card. ``verdicts`` None: not checked yet (``pending``) or checks switched off."""

    name: str
    title: str
    view: DisplayHint | None = None
    channels: int = 1
    picture: Image.Image | None = None
    alt: str = ""
    report: CheckReport | None = None
    pending: bool = False
    cost: str = ""
    error: str | None = None
    waiting: bool = False  # the map is not made yet


def _gradient(signed: bool, steps: int = 9) -> str:
    cmap = get_cmap(None, signed)
    stops = []
    for k in range(steps):
        r, g, b, _ = cmap(k / (steps - 1))
        stops.append(f"rgb({round(r * 255)},{round(g * 255)},{round(b * 255)}) {100 * k / (steps - 1):.0f}%")
    return f"linear-gradient(to right,{','.join(stops)})"


def legend(view: DisplayHint) -> str:
    if view.signed:
        ends = "<span>against the class</span><span>0</span><span>for the class</span>"
    else:
        ends = "<span>none</span><span>strongest</span>"
    return (
        f'<div class="ss-legend"><div class="ss-bar" style="background:{_gradient(view.signed)}"></div>'
        f'<div class="ss-ends">{ends}</div></div>'
    )


def card_html(card: Card) -> str:
    e = html.escape
    head = f"<b>{e(card.title)}</b>"
    if card.view is not None:
        head += f' <span class="ss-view">{e(view_label(card.view, card.channels))}</span>'
    parts = [f'<figure class="ss-card" data-method="{e(card.name)}"><figcaption>{head}</figcaption>']
    if card.waiting:
        parts.append('<p class="ss-waiting">explaining…</p>')
    elif card.error is not None:
        parts.append(f'<p class="ss-error" role="alert">{e(card.error)}</p>')
    elif card.picture is not None and card.view is not None:
        parts.append(f'<img class="ss-map" src="{jpeg_uri(card.picture)}" alt="{e(card.alt)}">')
        parts.append(legend(card.view))
    if card.report is not None:
        lines = "".join(
            f'<li class="ss-{e(v.status)}"><span class="ss-mark">{_MARKS.get(v.status, "?")}</span> '
            f"<b>{e(v.check)}</b>: {e(v.reason)}</li>"
            for v in card.report.verdicts
        )
        parts.append(f'<ul class="ss-verdicts">{lines}</ul>')
    elif card.pending:
        parts.append('<ul class="ss-verdicts"><li class="ss-pending">checking…</li></ul>')
    if card.cost:
        parts.append(f'<p class="ss-cost">{e(card.cost)}</p>')
    parts.append("</figure>")
    return "".join(parts)


def cards_html(cards: Sequence[Card], heading: str = "") -> str:
    if not cards:
        return ""
    top = f'<p class="ss-heading">{html.escape(heading)}</p>' if heading else ""
    return f'<div class="ss-maps">{top}<div class="ss-grid">{"".join(card_html(c) for c in cards)}</div></div>'


def status_html(text: str, kind: str = "note") -> str:
    """A line for the status box: ``kind`` is ``"note"``, ``"busy"`` or ``"error"`` (an alert)."""
    if not text:
        return ""
    role = ' role="alert"' if kind == "error" else ""
    return f'<div class="ss-status ss-{html.escape(kind)}"{role}>{html.escape(text)}</div>'


CSS = """
.ss-maps{width:100%}
.ss-heading{margin:.2rem 0 .6rem;font-size:1rem}
.ss-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:14px}
.ss-card{margin:0;padding:10px;border:1px solid var(--border-color-primary,#ddd);border-radius:10px;
  background:var(--block-background-fill,#fff);min-width:0;overflow-wrap:anywhere}
.ss-card figcaption{margin:0 0 6px;font-size:.95rem}
.ss-view{color:var(--body-text-color-subdued,#666);font-size:.85rem;margin-left:.3rem}
.ss-map{display:block;width:100%;height:auto;border-radius:6px}
.ss-legend{margin:6px 0 2px}
.ss-bar{height:9px;border-radius:3px}
.ss-ends{display:flex;justify-content:space-between;font-size:.72rem;color:var(--body-text-color-subdued,#666)}
.ss-verdicts{list-style:none;margin:8px 0 0;padding:0;font-size:.8rem;line-height:1.35}
.ss-verdicts li{margin:3px 0}
.ss-mark{display:inline-block;width:1.1em;font-weight:700}
.ss-pass .ss-mark{color:#1b7837} .ss-fail .ss-mark{color:#b2182b} .ss-skipped{color:#777}
.ss-fail{color:#8a1020} .ss-pending{color:#777;font-style:italic}
.ss-waiting{display:flex;align-items:center;justify-content:center;aspect-ratio:4/3;margin:0;border-radius:6px;
  background:var(--background-fill-secondary,#f4f4f4);color:#777;font-style:italic}
.ss-cost{margin:6px 0 0;font-size:.75rem;color:var(--body-text-color-subdued,#666)}
.ss-status{padding:8px 10px;border-radius:8px;font-size:.9rem}
.ss-note{background:var(--background-fill-secondary,#f4f4f4)}
.ss-busy{background:#eef4fb;color:#1f4e79}
.ss-error{background:#fdecea;color:#8a1020;border:1px solid #f5c2c0;padding:8px 10px;border-radius:8px}
"""
