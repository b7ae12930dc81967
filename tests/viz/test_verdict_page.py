"""The verdict page: every map's verdict is on it, in words as well as colour, and nothing is fetched."""

from __future__ import annotations

import re

from PIL import Image

from saliscope.viz.verdict_page import ImageSection, MapCard, verdict_page


def picture(colour: tuple[int, int, int], size: tuple[int, int] = (800, 600)) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_the_page_names_every_verdict_and_embeds_everything():
    failing = MapCard(
        "Gradient",
        picture((200, 0, 0)),
        [("map", "pass", "map is finite and varies"), ("stability", "fail", "rank correlation 0.32 < 0.5")],
        ["explained in 0.05 s"],
    )
    passing = MapCard("Grad-CAM <layer>", picture((0, 200, 0)), [("deletion", "pass", "AUC 0.24 beats 0.30")])
    skipped = MapCard("SmoothGrad", picture((0, 0, 200)), [("sanity", "skipped", "would take ~12 s")])
    sections = [
        ImageSection("chelsea", picture((90, 90, 90)), [("tiger cat", 0.39), ("tabby", 0.17)], "class 282", [failing]),
        ImageSection("coffee", picture((50, 50, 50)), [("espresso", 0.95)], "class 967", [passing, skipped]),
    ]
    page = verdict_page(sections, title="demo & test", intro=["two images"], notes=["how it works"])
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "demo &amp; test" in page and "Grad-CAM &lt;layer&gt;" in page  # escaped
    # Every verdict line, with its mark, and the overview's cells in words.
    assert "✗ stability</b> rank correlation 0.32 &lt; 0.5" in page
    assert "✓ deletion</b> AUC 0.24 beats 0.30" in page and "– sanity</b> would take ~12 s" in page
    assert "fails stability" in page and "passes" in page and "not checked" in page
    overview = page[page.index("Verdicts at a glance") : page.index("<section class='image'")]
    assert overview.count("<tr>") == 1 + 3  # the heading and one row per method
    assert "<td class='none'>—</td>" in overview  # SmoothGrad did not run on chelsea
    # Pictures are embedded, scaled down; nothing is fetched from anywhere.
    uris = re.findall(r"src='(data:image/jpeg;base64,[^']+)'", page)
    assert len(uris) == 2 + 3
    assert not re.search(r"(src|href)=['\"](https?:)?//", page)
    assert "tiger cat" in page and "39.0%" in page and "class 282" in page
