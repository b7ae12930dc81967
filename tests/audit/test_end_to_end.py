"""End to end: generated data sets with a planted marker, a tiny CNN trained on each for a few seconds, and
``saliscope audit`` on its test images — the planted class is flagged where the marker is (a corner, an
edge, a spot in the middle), and the control data set (same pictures, no marker) is not flagged at all.

Small on purpose (32×32 images, 100 per class, 16 epochs of a width-8 TinyCNN), yet every model here has
learned its task: the control model reads the real texture (≥ 0.9 test accuracy, asserted — a control
model at chance would make "not flagged" meaningless), the planted ones read the marker (their accuracy
collapses on the swapped test). Measured margins (seeds 0–1) where the marker is: corner excess 0.53–0.77,
edge 0.87–0.98, centre spot 0.40–0.49, each with a share of 0.96–1.00, against the 0.35 threshold; on the
control every corner, edge and the border stays below an excess of 0.05 and its spots reach a share of at
most 0.08, against 0.8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import saliscope as ss
from saliscope.cli.main import cli
from saliscope.datasets import Artefact, make_shortcut_dataset
from saliscope.train import evaluate_accuracy, train_tiny_cnn

SIZE = 32
PLANTED = {
    "corner": Artefact(kind="square", position="top-left", size=0.15),
    "stripe": Artefact(kind="stripe", position="top", size=0.15),
    "centre": Artefact(kind="square", position="centre", size=0.15),
}


def audited(root: Path, artefact: Artefact | None) -> dict[str, Any]:
    data = make_shortcut_dataset(
        root / "data",
        shortcut_class=None if artefact is None else "pneumonia",
        artefact=artefact or Artefact(),
        n_train=100,
        n_test=24,
        image_size=SIZE,
        seed=0,
    )
    model = train_tiny_cnn(data.train, epochs=16, width=8, seed=0)
    path = root / "model.pt"
    ss.save_model(model, path)  # saliscope's safe format: its preprocessing (32×32, no crop) and labels travel along
    result = CliRunner().invoke(cli, ["audit", str(data.test), "--model", str(path), "--out", str(root / "out")])
    assert result.exit_code == 0, result.output
    summary = json.loads((root / "out" / "summary.json").read_text())
    accuracy = {split: evaluate_accuracy(model, getattr(data, split)) for split in ("test", "test_swapped")}
    return {"data": data, "result": result, "summary": summary, "accuracy": accuracy}


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return audited(tmp_path_factory.mktemp("control"), None)


@pytest.fixture(scope="module", params=sorted(PLANTED))
def planted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return {"plant": request.param, **audited(tmp_path_factory.mktemp(request.param), PLANTED[request.param])}


def test_the_planted_class_is_flagged_where_the_marker_is(planted: dict[str, Any]) -> None:
    summary, data, plant = planted["summary"], planted["data"], planted["plant"]
    assert planted["accuracy"]["test"] >= 0.9
    assert planted["accuracy"]["test_swapped"] <= 0.2  # it reads the marker, not the texture
    assert summary["flagged"] == ["pneumonia"]
    pneumonia = next(c for c in summary["classes"] if c["name"] == "pneumonia")
    expected = {"corner": "top-left", "stripe": "top", "centre": "spot"}[plant]
    assert pneumonia["lead"] == expected and expected in pneumonia["flagged"]
    wording = {"corner": "top-left corner", "stripe": "top edge", "centre": "fixed spot at the centre"}[plant]
    line = next(line for line in planted["result"].stdout.splitlines() if line.startswith("class 'pneumonia'"))
    assert f"of saliency mass in the {wording}" in line and line.endswith("— possible shortcut")
    # The class's fixed spot holds the marker's centre (for the stripe: a part of it).
    x0, y0, x1, y1 = data.artefact.box(SIZE)
    spot = next(r for r in pneumonia["regions"] if r["name"] == "spot")
    sx0, sy0, sx1, sy1 = (v * SIZE for v in spot["box"])
    if plant == "stripe":
        assert sy0 < y1 and sy1 > y0
    else:
        assert sx0 <= (x0 + x1) / 2 <= sx1 and sy0 <= (y0 + y1) / 2 <= sy1
    # The most concentrated images are the class's own, shown in the report.
    assert len(pneumonia["suspicious"]) == 8 and all(s["key"].startswith("pneumonia/") for s in pneumonia["suspicious"])
    assert next(c for c in summary["classes"] if c["name"] == "normal")["status"] == "clear"


def test_the_control_data_set_is_not_flagged(control: dict[str, Any]) -> None:
    # A control model at chance would make "not flagged" meaningless: this one reads the texture.
    assert control["accuracy"]["test"] >= 0.9 and control["accuracy"]["test_swapped"] >= 0.9
    summary = control["summary"]
    assert summary["flagged"] == []
    assert [c["status"] for c in summary["classes"]] == ["clear", "clear"]
    assert "possible shortcut" not in control["result"].stdout
    named = [r for c in summary["classes"] for r in c["regions"] if r["kind"] != "spot"]
    assert max(r["excess"] for r in named) < 0.1
    spots = [r for c in summary["classes"] for r in c["regions"] if r["kind"] == "spot"]
    assert max(r["share"] for r in spots) < 0.5
