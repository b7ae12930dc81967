"""The tutorial notebook, executed top to bottom in a real Jupyter kernel: every cell runs, and each object shows
the rich output it promises (an explanation as its map, a figure once, a report as a table, a comparison as its
chart)."""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import pytest
from optional import require_module
from PIL import Image

NOTEBOOK = Path(__file__).parents[2] / "examples" / "explore.ipynb"

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory):
    for module in ("nbformat", "nbclient", "ipykernel"):
        require_module(module, 'pip install -e ".[dev]"')
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=900,
        resources={"metadata": {"path": str(tmp_path_factory.mktemp("notebook"))}},
    )
    # The kernel is a child process: it imports this checkout's saliscope (PYTHONPATH is inherited) and must
    # draw with Jupyter's inline backend even where the tests run with MPLBACKEND=Agg (as CI does).
    before = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        client.execute()
    finally:
        if before is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = before
    return nb


def tagged(nb, tag: str):
    (cell,) = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    return cell


def png(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_the_notebook_is_kept_without_outputs() -> None:
    require_module("nbformat", 'pip install -e ".[dev]"')
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_every_cell_runs_without_an_error(executed) -> None:
    for cell in executed.cells:
        if cell.cell_type == "code":
            assert all(o.output_type != "error" for o in cell.outputs), cell.source


def test_an_explanation_shows_as_its_map_titled_with_the_method_and_class(executed) -> None:
    (out,) = tagged(executed, "explanation").outputs
    assert out.output_type == "execute_result"
    assert png(out.data["image/png"]).size[0] >= 300
    page = out.data["text/html"]
    assert '<img src="data:image/png;base64,' in page and "<b>Grad-CAM</b>" in page and "tiger cat (282)" in page
    assert "text/plain" in out.data  # what a terminal would print


def test_show_returns_a_figure_that_the_notebook_shows_once(executed) -> None:
    outputs = tagged(executed, "show").outputs
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1  # not again at the end of the cell: the figure is not pyplot's
    assert png(images[0].data["image/png"]).size[0] >= 300
    negative = [o for o in tagged(executed, "evidence").outputs if "image/png" in o.get("data", {})]
    assert len(negative) == 1


def test_drawing_into_pyplot_axes_shows_the_pyplot_figure(executed) -> None:
    images = [o for o in tagged(executed, "axes").outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1 and png(images[0].data["image/png"]).size[0] >= 600


def test_a_check_report_shows_as_a_table_of_verdicts(executed) -> None:
    (out,) = tagged(executed, "report").outputs
    page = out.data["text/html"]
    assert page.startswith('<table class="saliscope-checks">')
    statuses = re.findall(r'<tr class="(pass|fail|skipped)">', page)
    assert len(statuses) == 5 and statuses[0] == "pass"  # map, deletion, stability, sanity, completeness
    assert "gradcam is not a path method" in page


def test_a_comparison_shows_as_its_chart(executed) -> None:
    (out,) = [o for o in tagged(executed, "comparison").outputs if o.output_type == "execute_result"]
    chart = png(out.data["image/png"])
    assert chart.width >= 400 and chart.height >= 400
