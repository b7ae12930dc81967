"""The explorer in Chromium, with the real default model: upload chelsea, press Explain, see a cat and the maps
with their verdicts; switch the class, the evidence and the opacity; download the files; run the comparison;
bad uploads; two visitors at once.

The README's screenshot is taken here: ``SALISCOPE_APP_SCREENSHOT=docs/app-screenshot.png pytest -m browser
tests/app`` writes it there (otherwise to a temporary folder).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chromium import WIDTH, chromium
from photos import NOT_AN_IMAGE, bomb_png, encoded, noise
from PIL import Image
from serving import QUIET_GRADIO, served
from shared_objects import default_model, samples

import saliscope as ss
from saliscope.app import AppSettings, Explorer
from saliscope.registry import MethodOptions
from saliscope.trust import Thresholds

pytestmark = [pytest.mark.browser, *QUIET_GRADIO]

# The tiny and fast settings: the maps of the default model, checked with short deletion curves.
FAST = AppSettings(
    methods=("gradient", "gradcam", "integrated-gradients"),
    options=MethodOptions(n_steps=8),
    checks=("map", "deletion", "completeness"),
    thresholds=Thresholds(deletion_steps=8, deletion_random_maps=1),
    timing_runs=1,
)
WAIT = 300_000  # ms: the machine may be busy


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with served(Explorer(default_model(), FAST)) as address:
        yield address


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    files = {
        "chelsea.png": encoded(samples()["chelsea"]),
        "coffee.jpg": encoded(samples()["coffee"], "JPEG"),
        "notes.png": NOT_AN_IMAGE,
        "bomb.png": bomb_png(20_000, 20_000),
        "dot.png": encoded(noise(1, 1)),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in files}


class Visitor:
    """One browser tab on the explorer, with its console errors recorded."""

    def __init__(self, browser: Any, url: str) -> None:
        self.context = browser.new_context(viewport={"width": WIDTH, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.page.goto(url)
        self.page.wait_for_selector("#explain")

    def upload(self, path: Path) -> None:
        """Upload a file, removing the one shown first (the × of the upload box), as a visitor would."""
        clear = self.page.locator('#upload button[aria-label="Clear"]')
        if clear.count():
            clear.click()
            self.page.wait_for_selector("#upload input[type=file]", state="attached")
        self.page.set_input_files("#upload input[type=file]", str(path))

    def pick_sample(self, name: str) -> None:
        self.page.click("#sample input")
        self.page.get_by_role("option", name=name, exact=True).click()

    def status(self) -> str:
        """The status line (not the progress Gradio draws over the same box while working)."""
        return self.page.evaluate("() => document.querySelector('#status .ss-status')?.innerText || ''")

    def wait_status(self, pattern: str) -> str:
        self.page.wait_for_function(
            "(p) => new RegExp(p).test(document.querySelector('#status .ss-status')?.innerText || '')",
            arg=pattern,
            timeout=WAIT,
        )
        return self.status()

    def maps_html(self) -> str:
        """The cards (not the progress overlay Gradio draws in the same box)."""
        return self.page.evaluate("() => document.querySelector('#maps .ss-maps')?.outerHTML || ''")

    def switch(self, control: str, text: str, done: str) -> None:
        """Click the option of a radio control and wait for the new maps and their verdicts."""
        before = self.maps_html()
        self.page.locator(f"{control} label", has_text=text).click()
        self.page.wait_for_function(
            "(old) => (document.querySelector('#maps .ss-maps')?.outerHTML || '') !== old", arg=before, timeout=WAIT
        )
        self.wait_status(done)

    def explain(self) -> None:
        self.page.click("#explain")
        self.wait_status("checked|error")

    def cards(self) -> list[dict[str, Any]]:
        return self.page.eval_on_selector_all(
            "#maps .ss-card",
            """cards => cards.map(c => ({
                method: c.dataset.method,
                caption: c.querySelector('figcaption').innerText,
                alt: c.querySelector('img')?.alt,
                src: c.querySelector('img')?.src.slice(-64),
                loaded: !!c.querySelector('img') && c.querySelector('img').complete
                    && c.querySelector('img').naturalWidth > 0,
                verdicts: Array.from(c.querySelectorAll('.ss-verdicts li'))
                    .map(li => li.className + ' ' + li.innerText),
                legend: c.querySelector('.ss-ends')?.innerText,
            }))""",
        )

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visitor(browser, url) -> Iterator[Visitor]:
    v = Visitor(browser, url)
    yield v
    v.close()


def test_upload_chelsea_press_explain_and_see_a_cat_and_its_maps(visitor, photos) -> None:
    visitor.upload(photos["chelsea.png"])
    visitor.page.wait_for_selector("#preview img", timeout=WAIT)
    assert "451×300 pixels" in visitor.status()
    visitor.explain()
    assert re.match(r"Maps of tiger cat \(282\), checked\.", visitor.status())
    top = visitor.page.inner_text("#top5")
    assert "tiger cat (282)" in top and "Egyptian cat (285)" in top and "tabby (281)" in top
    cards = visitor.cards()
    assert [c["method"] for c in cards] == ["gradient", "gradcam", "integrated-gradients"]
    assert all(c["loaded"] and c["alt"].endswith("map of tiger cat over the photo") for c in cards)
    assert [c["caption"] for c in cards] == [
        "Gradient magnitude (max |RGB|)",
        "Grad-CAM positive part",
        "Integrated Gradients signed (RGB summed)",
    ]
    for c in cards:
        checks = [line.split()[2].rstrip(":") for line in c["verdicts"]]
        assert checks == ["map", "deletion", "completeness"], c["verdicts"]
        assert c["verdicts"][0].startswith("ss-pass ✓ map: map is finite and varies")
    assert cards[0]["verdicts"][2].startswith("ss-skipped – completeness: gradient is not a path method")
    assert "against the class" in cards[2]["legend"] and "strongest" in cards[1]["legend"]
    assert visitor.errors == []


def test_a_sample_then_switching_the_class_the_evidence_and_the_opacity(visitor) -> None:
    visitor.pick_sample("chelsea")
    visitor.page.wait_for_selector("#preview img", timeout=WAIT)
    visitor.explain()
    first = visitor.cards()
    assert "Why tiger cat (282), 39" in visitor.page.inner_text("#maps")

    visitor.switch("#class", "Egyptian cat", r"Maps of Egyptian cat \(285\), checked")
    assert "Why Egyptian cat (285)" in visitor.page.inner_text("#maps")
    second = visitor.cards()
    assert all(c["alt"].endswith("map of Egyptian cat over the photo") for c in second)
    assert all(a["src"] != b["src"] for a, b in zip(first, second, strict=True))  # new maps, not the old ones

    visitor.switch("#evidence", "signed", r"Maps of Egyptian cat \(285\), checked")
    signed = visitor.cards()
    assert [c["caption"] for c in signed] == [
        "Gradient signed (RGB summed)",
        "Grad-CAM signed",
        "Integrated Gradients signed (RGB summed)",
    ]
    assert all("against the class" in c["legend"] for c in signed)
    assert signed[2]["src"] == second[2]["src"]  # IG was already signed: the same map

    before = visitor.cards()
    slider = visitor.page.locator("#alpha input[type=range]")
    box = slider.bounding_box()
    visitor.page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)  # opacity ≈ 0.3
    visitor.page.wait_for_function(
        "(old) => document.querySelector('#maps .ss-card img')?.src.slice(-64) !== old",
        arg=before[0]["src"],
        timeout=WAIT,
    )
    assert [c["verdicts"] for c in visitor.cards()] == [c["verdicts"] for c in before]  # same maps, same verdicts

    links = visitor.page.eval_on_selector_all("#downloads a", "as => as.map(a => a.href)")
    names = sorted(link.rsplit("/", 1)[-1] for link in links)
    assert names == sorted(
        [f"chelsea-285-{m}-signed.png" for m in ("gradient", "gradcam", "integrated-gradients")]
        + ["chelsea-285-gradient.npy", "chelsea-285-gradcam-signed.npy", "chelsea-285-integrated-gradients.npy"]
        + ["chelsea-285-summary.json"]
    )
    npy = next(link for link in links if link.endswith("gradcam-signed.npy"))
    raw = np.load(io.BytesIO(visitor.context.request.get(npy).body()))
    model = default_model()
    expected = ss.GradCAM(model, evidence="signed").explain(model.preprocess(samples()["chelsea"]), 285)
    np.testing.assert_allclose(raw, expected.attributions[0].numpy(), rtol=1e-5, atol=1e-7)
    assert visitor.errors == []


def test_bad_uploads_show_a_message_and_the_server_keeps_serving(visitor, photos) -> None:
    expected = {
        "notes.png": "the upload is not an image this page can read — upload a JPEG, PNG, WebP, GIF, BMP or TIFF",
        "bomb.png": "the upload has 400,000,000 pixels, more than the safety limit of",
        "dot.png": "the photo is 1×1 pixels; the model needs at least 8×8 — upload a larger photo",
    }
    for name, message in expected.items():
        visitor.upload(photos[name])
        visitor.page.wait_for_selector("#status [role=alert]", timeout=WAIT)
        assert visitor.page.inner_text("#status [role=alert]").startswith(message), name
        assert visitor.page.locator("#preview img").count() == 0
        visitor.page.click("#explain")  # Explain on a bad upload: the same message, nothing else
        visitor.wait_status("error|the upload|the photo")
        assert visitor.status().startswith(message)
        assert visitor.page.locator("#maps .ss-card").count() == 0
    visitor.upload(photos["chelsea.png"])
    visitor.page.wait_for_selector("#preview img", timeout=WAIT)
    visitor.explain()
    assert "tiger cat" in visitor.status()
    assert visitor.errors == []


def test_two_visitors_at_once_each_see_their_own_photo_explained(browser, url, photos) -> None:
    cat, cup = Visitor(browser, url), Visitor(browser, url)
    try:
        cat.upload(photos["chelsea.png"])
        cup.upload(photos["coffee.jpg"])
        for v in (cat, cup):
            v.page.wait_for_selector("#preview img", timeout=WAIT)
        cat.page.click("#explain")
        cup.page.click("#explain")  # both queued at once: the second waits for the model, then runs
        for v, label in ((cat, "tiger cat"), (cup, "espresso")):
            v.wait_status("checked|error")
            assert v.status().startswith(f"Maps of {label}")
            assert all(c["alt"].endswith(f"map of {label} over the photo") for c in v.cards())
            assert v.page.inner_text("#top5").split("\n")[0].startswith(label) or label in v.page.inner_text("#top5")
        assert "espresso" not in cat.page.inner_text("#top5") and "tiger cat" not in cup.page.inner_text("#top5")
        assert cat.errors == [] and cup.errors == []
    finally:
        cat.close()
        cup.close()


def test_the_measured_comparison_draws_its_chart(visitor) -> None:
    visitor.pick_sample("coffee")
    visitor.page.wait_for_selector("#preview img", timeout=WAIT)
    for title in ("Grad-CAM", "Integrated Gradients"):  # one method keeps it short
        visitor.page.locator("#methods").get_by_label(title, exact=True).uncheck()
    visitor.explain()
    assert [c["method"] for c in visitor.cards()] == ["gradient"]
    visitor.page.click("#comparison button, #comparison .label-wrap")
    visitor.page.click("#compare")
    visitor.page.wait_for_selector("#chart img", timeout=WAIT)
    assert visitor.status().startswith("Comparison of 1 method(s) on espresso")
    src = visitor.page.get_attribute("#chart img", "src")
    chart = Image.open(io.BytesIO(visitor.context.request.get(src).body()))
    assert chart.format == "PNG" and chart.width > 300 and chart.height > 300
    assert visitor.errors == []


def test_the_readme_screenshot(browser, photos) -> None:
    """With ``SALISCOPE_APP_SCREENSHOT=path``: the explorer with its real settings (every check, default
    thresholds and steps), chelsea explained, the top of the page at 1280 × 1200 written to ``path``."""
    shot = os.environ.get("SALISCOPE_APP_SCREENSHOT")
    if not shot:
        kept = Path(__file__).parents[2] / "docs" / "app-screenshot.png"
        assert Image.open(kept).size == (WIDTH, 1200)  # the README's picture is in the docs
        pytest.skip("set SALISCOPE_APP_SCREENSHOT=docs/app-screenshot.png to take the README's screenshot again")
    with served(Explorer(default_model(), AppSettings())) as address:
        visitor = Visitor(browser, address)
        try:
            visitor.upload(photos["chelsea.png"])
            visitor.page.wait_for_selector("#preview img", timeout=WAIT)
            visitor.page.click("#explain")
            visitor.wait_status("checked|error")
            assert visitor.status().startswith("Maps of tiger cat (282), checked")
            visitor.page.set_viewport_size({"width": WIDTH, "height": 1200})
            visitor.page.evaluate("window.scrollTo(0, 0)")
            visitor.page.mouse.move(0, 0)  # no hover highlight in the picture
            visitor.page.screenshot(path=shot)
        finally:
            visitor.close()
    assert Image.open(shot).size == (WIDTH, 1200)
