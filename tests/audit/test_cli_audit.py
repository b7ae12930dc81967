"""``saliscope audit``: outputs, exit codes and one-line errors, on a hand-set model saved to a file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from audit_models import PatchReader, write_folder
from click.testing import CliRunner

from saliscope.cli.audit import parse_region
from saliscope.cli.main import cli
from saliscope.core.errors import InputError


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "data", {"a": 6, "b": 6})


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "reader.pt"
    torch.save(PatchReader(), path)  # a whole module: its own 32×32 preprocessing and labels travel with it
    return path


def audit(*args: object) -> object:
    # The test models are whole pickled modules of this suite's own classes: trusted on purpose.
    return CliRunner().invoke(cli, ["audit", "--trust-pickle", *(str(a) for a in args)])


def test_audit_prints_verdicts_writes_the_report_and_lists_bad_files(
    data: Path, model_file: Path, tmp_path: Path
) -> None:
    (data / "b" / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    out = tmp_path / "out"
    result = audit(data, "--model", model_file, "--out", out, "--batch-size", 5, "--region", "0,0,16,16")
    assert result.exit_code == 1, result.output  # done, but a file was skipped
    lines = result.stdout.splitlines()
    assert lines[0].startswith("class 'a': 100% of saliency mass in the top-left corner (30% of each side")
    assert lines[0].endswith("— possible shortcut") and lines[1].startswith("class 'b': 100%")
    assert lines[2] == f"report: {out / 'report.html'} (summary: {out / 'summary.json'})"
    assert "1 files could not be audited and were skipped:" in result.stderr and "b/torn.png" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["region"] == [0.0, 0.0, 0.5, 0.5] and summary["model"]["input_size"] == 32
    assert summary["method"] == "gradcam" and summary["flagged"] == ["a", "b"]
    region = next(r for r in summary["classes"][0]["regions"] if r["name"] == "region")
    assert region["mass"] == pytest.approx(1.0)
    assert sorted(p.name for p in out.iterdir()) == ["records.jsonl", "report.html", "state.npz", "summary.json"]

    again = audit(data, "--model", model_file, "--out", out)
    assert again.exit_code == 2 and again.stderr.startswith("error: ") and "already holds an audit" in again.stderr
    assert "pass --resume to continue it" in again.stderr and len(again.stderr.splitlines()) == 1
    resumed = audit(data, "--model", model_file, "--out", out, "--batch-size", 5, "--region", "0,0,16,16", "--resume")
    assert resumed.exit_code == 1 and resumed.stdout.splitlines()[:2] == lines[:2]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "gradcamm"], "error: unknown method 'gradcamm' — did you mean gradcam"),
        (
            ["--method", "attention-rollout"],
            "attention-rollout does not apply to this model: PatchReader has no attention",
        ),
        (["--region", "0,0,40,16"], "is not a box inside the 32×32 model input"),
        (["--region", "a,b"], "is not four numbers"),
        (["--target", "label"], "the class folder 'a' is not one of the model's labels"),
        (["--device", "tpu"], "error: "),
        (["--layer", "nope"], "error: "),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    data: Path, model_file: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = audit(data, "--model", model_file, "--out", tmp_path / "out", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_folder_and_option_errors(tmp_path: Path, model_file: Path) -> None:
    missing = audit(tmp_path / "nope", "--model", model_file)
    assert missing.exit_code == 2 and "error: data folder not found" in missing.stderr
    write_folder(tmp_path / "flat", {".": 3})
    loose = audit(tmp_path / "flat", "--model", model_file)
    assert loose.exit_code == 2 and "3 images but no class sub-folders" in loose.stderr
    no_model = audit(tmp_path / "flat")
    assert no_model.exit_code == 2 and "Missing option '--model'" in no_model.stderr


def test_ctrl_c_keeps_the_results_and_says_how_to_resume(
    data: Path, model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import saliscope.audit

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(saliscope.audit, "run_audit", interrupted)
    result = audit(data, "--model", model_file, "--out", tmp_path / "out")
    assert result.exit_code == 130
    assert "interrupted: the results so far are kept" in result.stderr and "--resume" in result.stderr


def test_a_cropping_model_is_warned_about_and_no_crop_keeps_the_corners(data: Path, tmp_path: Path) -> None:
    model = PatchReader()
    model.preprocess = dataclasses.replace(model.preprocess, resize=40)  # resize 40, crop 32: corners cut off
    path = tmp_path / "cropping.pt"
    torch.save(model, path)
    cropped = audit(data, "--model", path, "--out", tmp_path / "a", "--limit", 2)
    assert cropped.exit_code == 0
    assert "warning: the model's preprocessing resizes to 40 and centre-crops 32×32: the outer 10%" in cropped.stderr
    whole = audit(data, "--model", path, "--out", tmp_path / "b", "--limit", 2, "--no-crop")
    assert whole.exit_code == 0 and "warning" not in whole.stderr


def test_parse_region_takes_pixels_or_fractions() -> None:
    assert parse_region("0,0,16,32", 32) == (0.0, 0.0, 0.5, 1.0)
    assert parse_region(" 0, 0, 0.25, 0.5 ", 32) == (0.0, 0.0, 0.25, 0.5)
    with pytest.raises(InputError, match="not a box"):
        parse_region("10,10,5,20", 32)
    with pytest.raises(InputError, match="mixes fractions and pixels"):
        parse_region("0,0,0.5,2", 32)  # not a 1-pixel-wide box read as pixels
