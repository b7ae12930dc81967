"""A reusable check of a page saliscope writes, in a real browser: ``check_page(path)``.

It opens the page in Chromium at 1280 px wide and collects every problem a reader would meet: an image that
did not load, a console error or an uncaught exception, a request that failed, and anything that overflows its
box (content wider than the element holding it, or wider than the window: a horizontal scroll bar).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chromium import WIDTH, chromium

# Elements whose content spills out of their box (and is not clipped or scrollable), or reaches past the
# window. Inline elements have no box of their own to overflow; a replaced element (img) is checked by size.
_OVERFLOWS = """
(slack) => {
  const out = [];
  const width = document.documentElement.clientWidth;
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
      (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  if (document.documentElement.scrollWidth > width + slack)
    out.push(`the page is ${document.documentElement.scrollWidth} px wide in a ${width} px window`);
  for (const el of document.body.querySelectorAll('*')) {
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.display === 'inline' || style.display === 'contents') continue;
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 && rect.height === 0) continue;
    if (rect.right > width + slack)
      out.push(`${name(el)} reaches ${Math.round(rect.right)} px, past the ${width} px window`);
    const clipped = ['hidden', 'auto', 'scroll', 'clip'].includes(style.overflowX);
    if (!clipped && el.scrollWidth > el.clientWidth + slack && el.clientWidth > 0)
      out.push(`${name(el)}: content ${el.scrollWidth} px wide overflows its ${el.clientWidth} px box`);
  }
  return out;
}
"""

_IMAGES = """
() => Array.from(document.images).map((img) => ({
  src: (img.currentSrc || img.src).slice(0, 80),
  alt: img.alt,
  loaded: img.complete && img.naturalWidth > 0,
  width: img.getBoundingClientRect().width,
}))
"""


@dataclass
class PageReport:
    """What a reader of the page would meet."""

    url: str
    images: list[dict[str, Any]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    overflows: list[str] = field(default_factory=list)

    @property
    def broken_images(self) -> list[str]:
        return [f"{i['alt'] or '(no alt)'}: {i['src']}" for i in self.images if not i["loaded"]]

    @property
    def problems(self) -> list[str]:
        return [
            *(f"image did not load: {b}" for b in self.broken_images),
            *(f"console error: {c}" for c in self.console_errors),
            *(f"request failed: {r}" for r in self.failed_requests),
            *(f"overflow: {o}" for o in self.overflows),
        ]


@contextmanager
def watched(page: Any) -> Iterator[PageReport]:
    """Record a page's console errors, uncaught exceptions and failed requests while the block runs."""
    report = PageReport(url="")
    page.on("console", lambda m: report.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: report.console_errors.append(f"uncaught: {exc}"))
    page.on("requestfailed", lambda r: report.failed_requests.append(f"{r.url[:100]} ({r.failure})"))
    yield report


def inspect(page: Any, report: PageReport, *, slack: int = 1) -> PageReport:
    """Fill ``report`` from the page as it is now (images, overflow)."""
    report.url = page.url
    page.wait_for_load_state("load")
    # Images report their state once decoded; give lazy ones a moment.
    page.wait_for_function("Array.from(document.images).every((img) => img.complete)", timeout=30_000)
    report.images = page.evaluate(_IMAGES)
    report.overflows = page.evaluate(_OVERFLOWS, slack)
    return report


def page_report(path: str | Path, *, browser: Any = None, width: int = WIDTH) -> PageReport:
    """Open ``path`` (a file) in Chromium at ``width`` px and report what a reader would meet."""
    url = Path(path).resolve().as_uri()
    if browser is None:
        with chromium() as own:
            return page_report(path, browser=own, width=width)
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        with watched(page) as report:
            page.goto(url)
            return inspect(page, report)
    finally:
        context.close()


def check_page(path: str | Path, *, browser: Any = None, width: int = WIDTH, min_images: int = 1) -> PageReport:
    """Assert that the page at ``path`` reads well in Chromium at ``width`` px: at least ``min_images`` images,
    every one loaded, no console error, no failed request, nothing overflowing its box. Returns the report."""
    report = page_report(path, browser=browser, width=width)
    assert len(report.images) >= min_images, f"{path}: {len(report.images)} image(s), expected ≥ {min_images}"
    assert not report.problems, f"{path} at {width} px:\n  " + "\n  ".join(report.problems)
    return report
