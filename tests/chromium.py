"""The system's Chromium driven by Playwright, for the tests marked ``browser``.

Playwright's own browser download is not used: the tests launch the Debian package's binary
(``/usr/bin/chromium``, or ``SALISCOPE_CHROMIUM``). Where it (or Playwright) is missing the browser tests
are skipped with the reason — except under CI (``CI`` set), where they fail: CI installs Chromium, so a
missing browser there is a broken setup, never a silent pass.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from optional import unavailable

CHROMIUM = os.environ.get("SALISCOPE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
WIDTH = 1280


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'Playwright is not installed (pip install -e ".[dev]")'
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and shutil.which(CHROMIUM) is None:
        return f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set SALISCOPE_CHROMIUM)"
    return None


def require() -> None:
    """Skip (locally) or fail (under CI) when the browser cannot run."""
    reason = missing()
    if reason is not None:
        unavailable(reason)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (Playwright ``Browser``), closed afterwards."""
    require()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
