"""The README stays a front page, its links and the site's nav point at files that exist, and the
documentation site builds under ``mkdocs build --strict``."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 300

# [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or ")".
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def relative_links(markdown: str) -> list[str]:
    """Link and image targets that point into the repository (no scheme, no pure anchor), code blocks skipped."""
    prose = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = [m.group(1) for m in _LINK.finditer(prose)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.I) and not t.startswith("#")]


def missing_targets(page: Path) -> list[str]:
    missing = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0]
        if path and not (page.parent / path).resolve().exists():
            missing.append(target)
    return missing


def ci_commands(prefix: str) -> list[str]:
    """Command lines of .ci/run starting with ``prefix`` (what CI really runs)."""
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip().startswith(prefix)]


def shell_blocks(markdown: str) -> list[str]:
    return re.findall(r"```(?:bash|sh|shell)\n(.*?)```", markdown, flags=re.DOTALL)


def test_link_finder_sees_links_and_skips_code_urls_and_anchors():
    text = (
        'See [a](docs/a.md), ![pic](docs/p.jpg), [b](docs/b.md#part "title"), [web](https://x.org/y), '
        "[here](#top) and `[not](code.md)`.\n```python\n[no](block.md)\n```\n"
    )
    assert relative_links(text) == ["docs/a.md", "docs/p.jpg", "docs/b.md#part"]


def test_missing_targets_are_reported(tmp_path):
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a) [gone](nowhere.md) [web](http://example.org)")
    assert missing_targets(page) == ["nowhere.md"]


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; keep it a front page (<= {MAX_README_LINES}) and move the rest to docs/"
    )


def test_readme_names_the_install_and_test_commands_ci_runs():
    text = README.read_text(encoding="utf-8")
    commands = "\n".join(shell_blocks(text))
    installs = ci_commands("pip install")
    assert installs, "no 'pip install' line found in .ci/run"
    for install in installs:
        assert install in commands, f"README must show the install command CI runs: {install}"
    assert "pytest" in ci_commands("pytest"), ".ci/run no longer runs plain 'pytest'"
    assert re.search(r"^pytest$", commands, flags=re.MULTILINE), "README must show the test command: pytest"


def test_readme_links_resolve():
    assert relative_links(README.read_text(encoding="utf-8")), "the README links into the docs"
    assert missing_targets(README) == []


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=lambda p: str(p.relative_to(DOCS)))
def test_docs_page_links_resolve(page):
    assert missing_targets(page) == []


@pytest.mark.parametrize("page", sorted(DOCS.rglob("*.md")), ids=lambda p: str(p.relative_to(DOCS)))
def test_no_figure_is_left_as_a_placeholder(page):
    """Tables and figures are pasted from the bench scripts' output; a line that is one upper-case word
    (``FIGURES``, ``SWEEP_TABLE``) outside code is a place still waiting for them."""
    prose = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert [line for line in prose.splitlines() if re.fullmatch(r"[A-Z][A-Z0-9_]{3,}", line.strip())] == []


def nav_pages(nav: object) -> list[str]:
    """Every page path named in an mkdocs nav (nested lists of {title: page or list})."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def test_every_nav_page_exists():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    pages = nav_pages(config["nav"])
    assert "index.md" in pages and "cli.md" in pages
    assert [page for page in pages if not (DOCS / page).is_file()] == []


_SITE_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_click")


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.docs
@pytest.mark.skipif(
    not all(_importable(name) for name in _SITE_PACKAGES), reason='needs the docs extra: pip install -e ".[docs]"'
)
def test_site_builds_strict(tmp_path):
    """``mkdocs build --strict``: every link, anchor, nav entry and API docstring must be clean."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    env["NO_MKDOCS_2_WARNING"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "cli" / "index.html").read_text(encoding="utf-8").count("saliscope explain") > 0
