"""`saliscope evaluate` and `saliscope compare` on the default model: files, flags, and errors."""

from __future__ import annotations

import csv
import json
import re

from PIL import Image

from saliscope.cli.main import cli


def test_evaluate_writes_json_and_csv_and_prints_flags(runner, chelsea_png, corrupt_jpg, tmp_path):
    out = tmp_path / "eval"
    result = runner.invoke(
        cli,
        [
            "evaluate",
            str(chelsea_png),
            str(corrupt_jpg),
            "-o",
            str(out),
            "--method",
            "gradient,gradcam",
            "--metrics",
            "deletion,sparseness,resolution",
        ],
    )
    assert result.exit_code == 1, result.output  # one bad file: the run goes on and reports it
    assert "broken.jpg" in result.output
    # The raw gradient is unstable under 1-px shifts on this model (rank correlation ~0.3): flagged.
    assert "gradient: 1 flag(s)" in result.output and "flag: stability: unstable under 1-px shifts" in result.output
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["method"] for r in rows] == ["gradient", "gradcam"]
    assert set(rows[0]) >= {"image", "method", "class", "seconds", "deletion", "sparseness", "resolution", "flags"}
    assert float(rows[1]["resolution"]) > 16 > float(rows[0]["resolution"])  # a 7x7 layer map vs pixel detail
    assert 0 <= float(rows[0]["sparseness"]) <= 1
    data = json.loads((out / "metrics.json").read_text())
    method = data["images"][0]["methods"][0]
    assert set(method["metrics"]) == {"deletion", "sparseness", "resolution"}
    assert {v["check"] for v in method["checks"]["verdicts"]} == {
        "map",
        "deletion",
        "stability",
        "sanity",
        "completeness",
    }
    assert data["failures"][0]["path"].endswith("broken.jpg")


def test_evaluate_unknown_metric_is_one_line(runner, chelsea_png, tmp_path):
    result = runner.invoke(cli, ["evaluate", str(chelsea_png), "-o", str(tmp_path / "e"), "--metrics", "vibes"])
    assert result.exit_code == 2
    assert "unknown metric 'vibes'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "e").exists()


def test_compare_writes_png_html_json_with_the_measured_chart(runner, chelsea_png, tmp_path):
    out = tmp_path / "cmp"
    result = runner.invoke(
        cli, ["compare", str(chelsea_png), "-o", str(out), "--methods", "gradient,gradcam", "--timing-runs", "1"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if line.startswith("method "))
    assert header.split() == ["method", "time", "detail", "stability", "faithfulness", "sanity", "needs"]
    table = lines[lines.index(header) : lines.index(header) + 3]
    assert [line.split()[0] for line in table[1:]] == ["Gradient", "Grad-CAM"]
    assert all(len(line) <= 100 for line in table)  # one line per method, fits a terminal
    scored = "the one the maps figure shows: Gradient: magnitude (max |RGB|); Grad-CAM: positive part."
    assert scored in result.output
    # progress: each method's seconds when it finishes, and the total
    assert re.search(r"gradient: done in \d+\.\d s", result.output)
    assert re.search(r"gradcam: done in \d+\.\d s", result.output) and re.search(r"\d+\.\d s in all", result.output)

    data = json.loads((out / "compare.json").read_text())
    by = {m["method"]: m for m in data["methods"]}
    assert by["gradcam"]["detail_px"] > 16 > by["gradient"]["detail_px"]
    assert by["gradcam"]["stability"] > by["gradient"]["stability"]
    assert by["gradient"]["needs"] == "gradients" and by["gradcam"]["needs"] == "a spatial layer"
    assert by["gradient"]["scored_on"] == {
        "reduce": "max-abs",
        "evidence": "absolute",
        "label": "magnitude (max |RGB|)",
    }
    assert by["gradcam"]["scored_on"]["evidence"] == "positive" and by["gradient"]["timed_runs"] == 1
    rows = {r["name"]: r for r in data["rows"]}
    assert rows["needs"]["grades"] is None and len(rows["faithfulness"]["grades"]) == 2
    assert "fastest of 1" in data["timing"]
    page = (out / "compare.html").read_text()
    body = page.split("<body>")[1]
    assert "Grad-CAM" in page and page.count("data:image/png;base64,") == 1 and "http" not in body
    assert "saliscope compare: the measured method comparison" in page and "not graded" in page
    assert scored in page and "map shown and scored:" in page
    with Image.open(out / "compare.png") as im:
        assert im.height > im.width / 4  # the maps stacked over the chart
