"""The pages saliscope writes, opened in Chromium at 1280 px: every image loads, no console error, nothing
overflows its box. The audit's report.html, compare's compare.html and the demo's index.html, each written by
the real command; and the checker itself, on a page broken on purpose, so a pass means something."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from chromium import chromium
from click.testing import CliRunner
from pages import check_page, page_report
from PIL import Image

from saliscope.cli.main import cli
from saliscope.models.preprocess import Preprocess
from saliscope.train import TinyCNN

sys.path.insert(0, str(Path(__file__).parents[1] / "audit"))  # the audit's hand-set models
from audit_models import PatchReader, write_folder

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


def run(*args: object) -> Any:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code in (0, 1), result.output
    return result


def test_the_checker_reports_a_broken_image_a_console_error_and_overflowing_boxes(tmp_path, browser) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body>"
        '<img alt="gone" src="missing.png">'
        '<div id="wide" style="width:1500px;height:10px"></div>'
        '<pre id="narrow" style="width:200px">' + "x" * 400 + "</pre>"
        "<script>console.error('boom')</script>"
        "</body></html>"
    )
    report = page_report(page, browser=browser)
    # The checker quotes a source's first 80 characters (an embedded image's would fill the report).
    assert report.broken_images == ["gone: " + (tmp_path / "missing.png").as_uri()[:80]]
    assert report.console_errors and any("boom" in c for c in report.console_errors)
    assert any("div#wide reaches" in o for o in report.overflows)
    assert any(o.startswith("pre#narrow: content") for o in report.overflows)
    assert any("the page is" in o for o in report.overflows)
    with pytest.raises(AssertionError, match="image did not load"):
        check_page(page, browser=browser)

    fine = tmp_path / "fine.html"
    pixel = Image.new("RGB", (4, 4), (200, 30, 30))
    pixel.save(tmp_path / "red.png")
    fine.write_text('<!DOCTYPE html><html><body><p>ok</p><img alt="red" src="red.png"></body></html>')
    assert check_page(fine, browser=browser).images[0]["loaded"]


def test_the_audit_report_reads_well_in_chromium(tmp_path, browser) -> None:
    data = write_folder(tmp_path / "data", {"corner": 6, "other": 6})
    model = tmp_path / "reader.pt"
    torch.save(PatchReader(), model)
    out = tmp_path / "audit"
    run("audit", data, "--model", model, "--trust-pickle", "--out", out, "--batch-size", 4)
    report = check_page(out / "report.html", browser=browser, min_images=2)
    assert all(i["width"] > 0 for i in report.images)


@pytest.fixture(scope="module")
def small_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def test_the_comparison_page_of_ten_methods_reads_well_in_chromium(tmp_path, small_photo, browser) -> None:
    model = TinyCNN(2, width=4, preprocess=Preprocess(size=32, resize=36), labels=("cat", "dog")).eval()
    torch.save(model, tmp_path / "tiny.pt")
    methods = (
        "gradient,gradient-x-input,integrated-gradients,smoothgrad,gradcam,gradcam-plus-plus,hirescam,layercam,"
        "occlusion,rise"
    )
    out = tmp_path / "compare"
    run(
        "compare", small_photo, "--model", tmp_path / "tiny.pt", "--trust-pickle", "--methods", methods,
        "--timing-runs", 1, "--n-steps", 8, "--n-samples", 8, "--n-perturbations", 64, "--out", out,
    )  # fmt: skip
    report = check_page(out / "compare.html", browser=browser)
    assert report.images[0]["width"] <= 1280


def test_the_demo_index_reads_well_in_chromium(tmp_path, browser) -> None:
    out = tmp_path / "demo"
    run("demo", "--method", "gradient", "--out", out)
    page = check_page(out / "index.html", browser=browser, min_images=8)  # four photos, a map over each
    assert all(i["width"] > 0 for i in page.images)
