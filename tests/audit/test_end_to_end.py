"""End to end: a generated data set with a planted marker, a tiny CNN trained on it for a few seconds, and
``saliscope audit`` on its test images — the planted class is flagged where the marker is, and the
control data set (same pictures, no marker) is not flagged at all.

Small on purpose (32×32 images, 40 per class, 10 epochs of a width-8 TinyCNN): a model that has learned
the marker reads it in nearly every image, so the margins are wide (for seeds 0–1, the planted class's
excess in the top-left corner is 0.49–0.59 against the 0.35 threshold, every other region and every
control class stays below 0.11).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from saliscope.cli.main import cli
from saliscope.datasets import make_shortcut_dataset
from saliscope.train import train_tiny_cnn

SIZE = 32


def audited(root: Path, shortcut_class: str | None) -> dict[str, Any]:
    data = make_shortcut_dataset(root / "data", shortcut_class=shortcut_class, n_train=40, n_test=24,
                                 image_size=SIZE, seed=0)
    model = train_tiny_cnn(data.train, epochs=10, width=8, seed=0)
    path = root / "model.pt"
    torch.save(model, path)  # a whole module: its own preprocessing (32×32, no crop) and labels travel with it
    result = CliRunner().invoke(cli, ["audit", str(data.test), "--model", str(path), "--out", str(root / "out")])
    assert result.exit_code == 0, result.output
    summary = json.loads((root / "out" / "summary.json").read_text())
    return {"data": data, "result": result, "summary": summary}


@pytest.fixture(scope="module")
def shortcut(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return audited(tmp_path_factory.mktemp("shortcut"), "pneumonia")


@pytest.fixture(scope="module")
def control(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return audited(tmp_path_factory.mktemp("control"), None)


def test_the_planted_class_is_flagged_where_the_marker_is(shortcut: dict[str, Any]) -> None:
    summary, data = shortcut["summary"], shortcut["data"]
    assert summary["flagged"] == ["pneumonia"]
    pneumonia = next(c for c in summary["classes"] if c["name"] == "pneumonia")
    assert pneumonia["lead"] == "top-left" and "top-left" in pneumonia["flagged"]
    assert pneumonia["accuracy"] > 0.9  # the marker alone tells the class
    # The class's fixed spot holds the marker's centre.
    x0, y0, x1, y1 = data.artefact.box(SIZE)
    spot = next(r for r in pneumonia["regions"] if r["name"] == "spot")
    sx0, sy0, sx1, sy1 = (v * SIZE for v in spot["box"])
    assert sx0 <= (x0 + x1) / 2 <= sx1 and sy0 <= (y0 + y1) / 2 <= sy1
    line = next(line for line in shortcut["result"].stdout.splitlines() if line.startswith("class 'pneumonia'"))
    assert "of saliency mass in the top-left corner" in line and line.endswith("— possible shortcut")
    # The most concentrated images are the class's own, shown in the report.
    assert len(pneumonia["suspicious"]) == 8 and all(s["key"].startswith("pneumonia/") for s in pneumonia["suspicious"])


def test_the_control_data_set_is_not_flagged(control: dict[str, Any]) -> None:
    summary = control["summary"]
    assert summary["flagged"] == []
    assert [c["status"] for c in summary["classes"]] == ["clear", "clear"]
    assert "possible shortcut" not in control["result"].stdout
    worst = max(r["excess"] for c in summary["classes"] for r in c["regions"])
    assert worst < 0.2
