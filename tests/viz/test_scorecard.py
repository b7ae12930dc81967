"""The comparison chart: what it is given is what it shows."""

from __future__ import annotations

import re

import pytest

from saliscope.viz.scorecard import GRADE_COLOURS, ScoreRow, scorecard_figure, scorecard_html

METHODS = ["gradcam", "scorecam"]
ROWS = [
    ScoreRow("time (s)", ["0.02", "6.5"], ["good", "poor"], "good < 0.5 s"),
    ScoreRow("detail (px)", ["32", "n/a"], ["moderate", "n/a"]),
]


def test_html_is_self_contained_and_carries_values_grades_and_flags() -> None:
    page = scorecard_html(METHODS, ROWS, title="chelsea <cat>", figures=[("maps", b"\x89PNG fake")],
                          flags=[("gradcam", "fail", "map barely changes when the model is randomised")])
    assert "chelsea &lt;cat&gt;" in page  # escaped
    assert page.count(f"background:{GRADE_COLOURS['poor']}") == 1
    assert ">6.5<small>poor</small>" in page and ">0.02<small>good</small>" in page
    assert "data:image/png;base64," in page
    assert not re.search(r"""(src|href)=["']https?://""", page)  # nothing fetched from outside
    assert "map barely changes" in page and "good &lt; 0.5 s" in page


def test_figure_draws_every_cell() -> None:
    figure = scorecard_figure(METHODS, ROWS, title="t")
    texts = [t.get_text() for t in figure.axes[0].texts]
    for cell in ("0.02", "6.5", "32", "n/a", "good", "poor", "moderate", "gradcam", "scorecam", "time (s)"):
        assert cell in texts


def test_rows_must_match_methods() -> None:
    with pytest.raises(ValueError, match="2 values but 1 grades"):
        ScoreRow("x", ["1", "2"], ["good"])
    with pytest.raises(ValueError, match="unknown grade"):
        ScoreRow("x", ["1"], ["great"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="1 cells for 2 methods"):
        scorecard_figure(METHODS, [ScoreRow("x", ["1"], ["good"])])
