"""The comparison chart: what it is given is what it shows."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from saliscope.viz.files import png_bytes
from saliscope.viz.scorecard import (
    GRADE_COLOURS,
    UNGRADED_COLOUR,
    ScoreRow,
    blocks_of,
    scorecard_figure,
    scorecard_html,
)

METHODS = ["gradcam", "scorecam"]
ROWS = [
    ScoreRow("time (s)", ["0.02", "6.5"], ["good", "poor"], "good < 0.5 s", "fastest of 3", ["min of 3", "once"]),
    ScoreRow("detail (px)", ["32", "n/a"], ["moderate", "n/a"]),
    ScoreRow("needs", ["a spatial layer", "a spatial layer"], None, note="what the method asks of the model"),
]


def _texts(figure) -> list[str]:
    return [t.get_text() for t in figure.axes[0].texts]


def test_html_is_self_contained_and_carries_values_grades_details_and_flags() -> None:
    page = scorecard_html(
        METHODS,
        ROWS,
        title="chelsea <cat>",
        subtitles=["scored on: positive part"] * 2,
        figures=[("maps", b"\x89PNG fake")],
        notes=["time: fastest of 3 runs"],
        flags=[("gradcam", "fail", "map barely changes when the model is randomised")],
    )
    assert "chelsea &lt;cat&gt;" in page  # escaped
    assert page.count(f"background:{GRADE_COLOURS['poor']}") == 1
    assert ">6.5<small>once</small><small>poor</small>" in page
    assert ">0.02<small>min of 3</small><small>good</small>" in page
    assert page.count("<small>scored on: positive part</small>") == 2 and "time: fastest of 3 runs" in page
    assert "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']https?://""", page)  # nothing fetched from outside
    assert "map barely changes" in page and "fastest of 3; good &lt; 0.5 s" in page


def test_an_ungraded_row_is_neutral_and_says_it_is_not_graded() -> None:
    page = scorecard_html(METHODS, ROWS, title="t")
    needs = page.split(">needs<")[1].split("</tr>")[0]
    assert needs.count(f"background:{UNGRADED_COLOUR}") == 2 and "not graded" in needs
    assert not any(g in needs for g in ("good", "moderate", "poor"))
    figure = scorecard_figure(METHODS, ROWS)
    faces = [p.get_facecolor() for p in figure.axes[0].patches]
    from matplotlib.colors import to_rgba

    assert faces.count(to_rgba(UNGRADED_COLOUR)) == 2 and faces.count(to_rgba(GRADE_COLOURS["poor"])) == 1


def test_figure_draws_every_cell_and_heading() -> None:
    figure = scorecard_figure(
        METHODS, ROWS, title="t", subtitles=["positive part", "signed"], footnotes=["Flag, gradcam: sanity"]
    )
    joined = "\n".join(_texts(figure))
    for cell in (
        "0.02",
        "6.5",
        "32",
        "n/a",
        "good",
        "poor",
        "moderate",
        "gradcam",
        "scorecam",
        "time (s)",
        "min of 3",
        "positive part",
        "signed",
        "Flag, gradcam: sanity",
        "not graded",
    ):
        assert cell in joined
    # Each heading and cell is a text of its own (a footnote naming "gradcam" is not its heading).
    texts = _texts(figure)
    for cell in ("gradcam", "scorecam", "positive part", "signed", "Flag, gradcam: sanity"):
        assert cell in texts, cell
    assert any(t.startswith("min of 3") and t.endswith("good") for t in texts)
    assert any(t.endswith("poor") for t in texts) and texts.count("n/a") >= 2
    assert any(t.endswith("not graded") for t in texts)


def test_title_is_centred_on_the_figure_and_the_width_is_the_one_asked_for() -> None:
    figure = scorecard_figure(METHODS, ROWS, title="measured", width=9.0)
    assert figure.get_size_inches()[0] == pytest.approx(9.0)
    title = next(t for t in figure.axes[0].texts if t.get_text() == "measured")
    assert title.get_position()[0] == pytest.approx(4.5) and title.get_horizontalalignment() == "center"
    with Image.open(io.BytesIO(png_bytes(figure))) as png:  # drawn at the figure's own dpi, 9 inches wide
        assert png.format == "PNG" and png.width == round(9.0 * figure.dpi)


def test_long_row_names_and_rules_stay_in_the_label_column() -> None:
    long = ScoreRow(
        "sanity",
        ["0.37"],
        ["good"],
        "good ≤ 0.5, moderate ≤ 0.8, poor > 0.8",
        "rank corr. left after re-initialising the top 3 stages of the model",
    )
    figure = scorecard_figure(["Gradient"], [long], label_width=3.0)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    label_px = 3.0 * figure.dpi
    for text in figure.axes[0].texts:
        if text.get_text() not in ("Gradient", "0.37", "good"):
            assert text.get_window_extent(renderer).x1 < label_px, text.get_text()


def test_many_methods_wrap_into_even_blocks_no_narrower_than_the_minimum() -> None:
    assert [len(b) for b in blocks_of(19, width=18.0, label_width=3.0, min_cell=1.45)] == [10, 9]
    assert [len(b) for b in blocks_of(4, width=15.0, label_width=3.0, min_cell=1.45)] == [4]
    assert [len(b) for b in blocks_of(3, width=1.0, label_width=3.0, min_cell=1.45)] == [1, 1, 1]
    many = [f"m{i}" for i in range(19)]
    figure = scorecard_figure(many, [ScoreRow("x", ["1"] * 19, ["good"] * 19)], width=18.0)
    assert _texts(figure).count("x") == 2  # the row's label repeats in each block


def test_rows_must_match_methods() -> None:
    with pytest.raises(ValueError, match="2 values but 1 grades"):
        ScoreRow("x", ["1", "2"], ["good"])
    with pytest.raises(ValueError, match="unknown grade"):
        ScoreRow("x", ["1"], ["great"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="2 values but 1 details"):
        ScoreRow("x", ["1", "2"], None, details=["a"])
    with pytest.raises(ValueError, match="1 cells for 2 methods"):
        scorecard_figure(METHODS, [ScoreRow("x", ["1"], ["good"])])
    with pytest.raises(ValueError, match="1 subtitles for 2 methods"):
        scorecard_figure(METHODS, ROWS, subtitles=["one"])
