"""One self-contained HTML page of explained images and the verdicts on each map (``saliscope demo``,
``saliscope explain --check``): every picture embedded, nothing fetched, readable without colour.

The page only lays out what it is given — photos, overlays, top-5 predictions and, per map, the checks'
``(check, status, reason)`` lines — so it knows nothing of how the checks are made.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

_PICTURE_SIDE = 360  # the longer side of every embedded picture, in pixels
_MARKS = {"pass": "✓", "fail": "✗", "skipped": "–"}


@dataclass(frozen=True)
class MapCard:
    """One method's map of one image, with its verdicts.

    ``verdicts`` are ``(check, status, reason)`` with status ``"pass"``, ``"fail"`` or ``"skipped"``;
    ``facts`` are short lines under the title (time, completeness gap, ...).
    """

    title: str
    picture: Image.Image
    verdicts: Sequence[tuple[str, str, str]]
    facts: Sequence[str] = ()
    scale: str = ""  # what the colours mean, e.g. "red for the class, blue against"

    @property
    def status(self) -> str:
        """``"fail"`` when any check failed, ``"pass"`` when at least one passed and none failed, else
        ``"skipped"``."""
        states = {status for _, status, _ in self.verdicts}
        return "fail" if "fail" in states else "pass" if "pass" in states else "skipped"


@dataclass(frozen=True)
class ImageSection:
    """One image: the photo, the model's top predictions, the class explained and one card per map."""

    name: str  # short, for headings: "chelsea"
    photo: Image.Image
    top: Sequence[tuple[str, float]]  # (label, probability), best first
    explained: str  # e.g. "class 282 'tiger cat' (39.3%)"
    cards: Sequence[MapCard] = field(default_factory=tuple)
    source: str = ""  # where the image came from, in full: "photos/chelsea.png"


def picture_uri(image: Image.Image, side: int = _PICTURE_SIDE) -> str:
    """A JPEG data URI of ``image`` scaled so its longer side is at most ``side`` pixels."""
    picture = image.convert("RGB")
    scale = side / max(picture.size)
    if scale < 1:
        picture = picture.resize(
            (round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS
        )
    return jpeg_uri(picture)


def jpeg_uri(image: Image.Image, quality: int = 88) -> str:
    """A JPEG data URI of ``image`` as it is (pages embed their pictures: nothing is fetched)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def verdict_page(
    sections: Sequence[ImageSection],
    *,
    title: str,
    intro: Sequence[str] = (),
    notes: Sequence[str] = (),
) -> str:
    """The HTML page: a verdict table (methods × images) first, then every image with its maps and
    their verdicts, then ``notes`` (how the checks decide)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body><main>",
        f"<h1>{e(title)}</h1>",
        *(f"<p class='intro'>{e(line)}</p>" for line in intro),
        _overview(sections),
    ]
    for k, section in enumerate(sections):
        parts.append(_section(section, k))
    if notes:
        parts.append("<section class='notes'><h2>How the verdicts are reached</h2><ul>")
        parts.extend(f"<li>{e(note)}</li>" for note in notes)
        parts.append("</ul></section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _overview(sections: Sequence[ImageSection]) -> str:
    """A table, one row per method and one column per image: each map's verdict at a glance."""
    e = html.escape
    methods = list(dict.fromkeys(card.title for s in sections for card in s.cards))
    if not methods:
        return ""
    head = "".join(f"<th><a href='#image-{k}'>{e(s.name)}</a></th>" for k, s in enumerate(sections))
    rows = []
    for method in methods:
        cells = []
        for section in sections:
            card = next((c for c in section.cards if c.title == method), None)
            if card is None:
                cells.append("<td class='none'>—</td>")
                continue
            failed = [check for check, status, _ in card.verdicts if status == "fail"]
            word = "fails " + ", ".join(failed) if failed else ("passes" if card.status == "pass" else "not checked")
            cells.append(f"<td class='{card.status}'><b>{_MARKS[card.status]}</b> {e(word)}</td>")
        rows.append(f"<tr><th scope='row'>{e(method)}</th>{''.join(cells)}</tr>")
    return (
        "<section class='overview'><h2>Verdicts at a glance</h2>"
        f"<table><thead><tr><th>method</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _section(section: ImageSection, k: int) -> str:
    e = html.escape
    best = max((p for _, p in section.top), default=1.0) or 1.0
    top = "".join(
        f"<li><span class='label'>{e(label)}</span><span class='bar'><span style='width:{100 * p / best:.1f}%'>"
        f"</span></span><span class='pct'>{p:.1%}</span></li>"
        for label, p in section.top
    )
    cards = "".join(_card(card) for card in section.cards)
    source = f" <small>{e(section.source)}</small>" if section.source and section.source != section.name else ""
    return (
        f"<section class='image' id='image-{k}'><h2>{e(section.name)}{source}</h2>"
        f"<div class='grid'><figure class='card photo'><img alt='{e(section.name)}' "
        f"src='{picture_uri(section.photo)}'><figcaption><h3>the photo and the model's top 5</h3>"
        f"<p class='explained'>explained: {e(section.explained)}</p><ol class='top'>{top}</ol>"
        f"</figcaption></figure>{cards}</div></section>"
    )


def _card(card: MapCard) -> str:
    e = html.escape
    lines = "".join(
        f"<li class='{e(status)}'><b>{_MARKS.get(status, '?')} {e(check)}</b> {e(reason)}</li>"
        for check, status, reason in card.verdicts
    )
    facts = "".join(f"<span>{e(fact)}</span>" for fact in card.facts)
    badge = {"pass": "passes every check run", "fail": "fails a check", "skipped": "not checked"}[card.status]
    scale = f"<p class='scale'>{e(card.scale)}</p>" if card.scale else ""
    return (
        f"<figure class='card {card.status}'><img alt='{e(card.title)} map' src='{picture_uri(card.picture)}'>"
        f"<figcaption><h3>{e(card.title)} <span class='badge {card.status}'>{badge}</span></h3>"
        f"<p class='facts'>{facts}</p>{scale}<ul class='verdicts'>{lines}</ul></figcaption></figure>"
    )


_STYLE = """
:root { color-scheme: light; --fg: #1f2328; --muted: #59636e; --line: #d1d9e0;
  --pass: #1a7f37; --pass-bg: #dafbe1; --fail: #cf222e; --fail-bg: #ffebe9; --skip: #59636e; --skip-bg: #eff2f5; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--fg); background: #f6f8fa; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 8px; }
h2 { font-size: 20px; margin: 32px 0 12px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h2 small { font-size: 13px; font-weight: normal; color: var(--muted); margin-left: 8px; }
h3 { font-size: 15px; margin: 0 0 4px; display: flex; flex-wrap: wrap; gap: 6px; align-items: baseline; }
p.intro { margin: 4px 0; color: var(--muted); max-width: 90ch; }
table { border-collapse: collapse; background: white; border: 1px solid var(--line); }
th, td { padding: 6px 12px; border: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: #eef1f4; }
th a { color: inherit; }
td.pass { background: var(--pass-bg); color: var(--pass); }
td.fail { background: var(--fail-bg); color: var(--fail); }
td.skipped, td.none { background: var(--skip-bg); color: var(--skip); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(290px, 1fr)); gap: 14px; }
.card { margin: 0; background: white; border: 1px solid var(--line); border-radius: 8px; overflow: hidden;
  display: flex; flex-direction: column; }
.card.fail { border-top: 4px solid var(--fail); }
.card.pass { border-top: 4px solid var(--pass); }
.card.skipped { border-top: 4px solid var(--skip); }
.card.photo { border-top: 4px solid #8c959f; }
.card img { width: 100%; height: auto; display: block; background: #eee; }
figcaption { padding: 10px 12px 12px; }
.badge { font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 10px; }
.badge.pass { background: var(--pass-bg); color: var(--pass); }
.badge.fail { background: var(--fail-bg); color: var(--fail); }
.badge.skipped { background: var(--skip-bg); color: var(--skip); }
p.facts { margin: 0 0 6px; color: var(--muted); font-size: 13px; }
p.facts span + span::before { content: " · "; }
p.scale { margin: 0 0 6px; color: var(--muted); font-size: 12px; font-style: italic; }
p.explained { margin: 0 0 6px; }
ul.verdicts { list-style: none; margin: 0; padding: 0; font-size: 13px; }
ul.verdicts li { padding: 3px 0 3px 8px; margin: 2px 0; border-left: 3px solid var(--line); }
ul.verdicts li.pass { border-color: var(--pass); }
ul.verdicts li.pass b { color: var(--pass); }
ul.verdicts li.fail { border-color: var(--fail); background: var(--fail-bg); }
ul.verdicts li.fail b { color: var(--fail); }
ul.verdicts li.skipped { border-color: #afb8c1; color: var(--muted); }
ol.top { margin: 0; padding: 0; list-style: none; font-size: 13px; }
ol.top li { display: grid; grid-template-columns: minmax(0, 1fr) 80px 48px; gap: 6px; align-items: center; }
ol.top .label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
ol.top .bar { height: 8px; background: #eef1f4; border-radius: 4px; overflow: hidden; }
ol.top .bar span { display: block; height: 100%; background: #4c8bd6; }
ol.top .pct { text-align: right; font-variant-numeric: tabular-nums; color: var(--muted); }
section.notes ul { color: var(--muted); max-width: 100ch; }
"""
