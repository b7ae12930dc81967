"""The real entry point in a fresh process (`python -m saliscope`), and `saliscope demo`."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import saliscope
from saliscope.cli.main import cli

SRC = str(Path(saliscope.__file__).resolve().parents[1])


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "saliscope", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_python_m_saliscope_explain_writes_results(chelsea_png, tmp_path):
    done = run_cli("explain", "chelsea.png", "-m", "gradient", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    out = tmp_path / "saliscope-out"  # the default output folder, in the working directory
    assert "results in saliscope-out" in done.stdout
    assert np.load(out / "chelsea" / "gradient.npy").shape == (3, 224, 224)
    assert (out / "chelsea" / "panel.png").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"][0]["explained"][0]["class"] in range(281, 286)


def test_python_m_saliscope_user_error_is_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    done = run_cli("explain", "bad.png", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "bad.png" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "saliscope-out").exists()


def test_demo_explains_the_four_sample_photos_and_judges_every_map(runner, tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(cli, ["demo", "-o", str(out), "-m", "gradient,gradcam"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "astronaut",
        "chelsea",
        "coffee",
        "index.html",
        "rocket",
        "summary.json",
    ]
    summary = json.loads((out / "summary.json").read_text())
    by_dir = {i["output_dir"]: i for i in summary["images"]}
    assert by_dir["chelsea"]["explained"][0]["class"] in range(281, 286)
    assert by_dir["chelsea"]["path"] == "skimage.data.chelsea"
    for name in by_dir:
        assert np.load(out / name / "gradient.npy").shape == (3, 224, 224)
    assert f"results in {out}" in result.stdout
    # One verdict line per method and image, and the same verdicts in the summary and on the page.
    page = (out / "index.html").read_text()
    lines = result.stdout.splitlines()
    for title, name in (("Gradient", "gradient"), ("Grad-CAM", "gradcam")):
        printed = [line for line in lines if line.strip().startswith(title + " ")]
        assert len(printed) == 4, printed
        for image, line in zip(summary["images"], printed, strict=True):  # printed in the images' order
            record = next(m for m in image["explained"][0]["methods"] if m["name"] == name)
            verdicts = record["checks"]["verdicts"]
            assert [v["check"] for v in verdicts] == ["map", "deletion", "stability", "sanity"]
            for v in verdicts:
                assert html.escape(v["reason"]) in page
            failed = [v["check"] for v in verdicts if v["status"] == "fail"]
            assert ("FAIL" in line) == bool(failed) and all(f in line for f in failed)
    assert page.count("<figure class='card") == 4 * 3  # each image: the photo and two maps
    assert "Verdicts at a glance" in page and "data:image/jpeg;base64," in page and "http" not in page
