"""How a notebook shows a check report (a table of verdicts) and a comparison (its chart)."""

from __future__ import annotations

import io
import re

from faithfulness_models import BlockReader, block_image, block_mask
from PIL import Image

from saliscope.core.cost import Cost
from saliscope.methods.base import Attribution, Explainer
from saliscope.trust import CheckReport, Thresholds, Verdict, compare_methods

FAST = Thresholds(deletion_steps=8, deletion_random_maps=1)


def test_a_check_report_is_a_table_with_one_row_per_verdict_its_mark_word_and_reason_escaped() -> None:
    report = CheckReport(
        "gradcam",
        (
            Verdict("map", "pass", (1.0,), 1e-6, "map is finite and varies", (False,)),
            Verdict("deletion", "fail", (0.1,), 0.0, "AUC 0.3 is no better than <chance> & co", (True,)),
            Verdict("completeness", "skipped", (), 0.05, "gradcam is not a path method"),
        ),
        Cost(10, 0, 2, 1.25, None),
    )
    page = report._repr_html_()
    rows = re.findall(r'<tr class="(\w+)">(.*?)</tr>', page)
    assert [status for status, _ in rows] == ["pass", "fail", "skipped"]
    assert "✓ pass" in rows[0][1] and "✗ fail" in rows[1][1] and "– skipped" in rows[2][1]
    assert "&lt;chance&gt; &amp; co" in rows[1][1] and "<chance>" not in page
    assert "<b>gradcam</b>: 1 check failed, 1 skipped; measuring took 1.2 s" in page
    passed = CheckReport("gradient", (Verdict("map", "pass", (1.0,), 1e-6, "fine", (False,)),))
    assert "every check passed" in passed._repr_html_()


class Fixed(Explainer):
    name = "fixed"

    def __init__(self, model, saliency, name="fixed"):
        super().__init__(model)
        self.saliency, self.name = saliency, name  # type: ignore[misc]

    def _attribute(self, net, x, target, meter):
        return Attribution(self.saliency.expand(x.shape[0], -1, -1, -1).clone())


def test_a_comparison_shows_as_its_chart_with_the_method_titles_and_its_flags() -> None:
    model, x = BlockReader(), block_image()
    result = compare_methods(
        model,
        x,
        {"occlusion": Fixed(model, block_mask(), "occlusion"), "away": Fixed(model, 1 - block_mask(), "away")},
        0,
        thresholds=FAST,
        timing_runs=1,
    )
    png = result._repr_png_()
    assert Image.open(io.BytesIO(png)).format == "PNG"
    texts = [t.get_text() for t in result.figure().axes[0].texts]
    assert "Occlusion" in texts and "away" in texts  # registered methods by their title, others by name
    # Fixed maps ignore the model, so both fail the sanity check; only the one pointing away from the block
    # fails the deletion check. One footnote per method, its failed checks joined.
    notes = " ".join(texts)  # footnotes are wrapped into lines: join them back
    occlusion = notes[notes.index("Flag, Occlusion") : notes.index("Flag, away")]
    away = notes[notes.index("Flag, away") :]
    assert "deletion" in away and "sanity" in away
    assert "sanity" in occlusion and "deletion" not in occlusion
    assert any(t.startswith("time: the fastest of 1") for t in texts)
