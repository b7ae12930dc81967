"""CAMs on the command line: the methods, --layer, --evidence, and methods that do not apply."""

from __future__ import annotations

import json

import numpy as np

from saliscope.cli.main import cli


def test_gradcam_family_on_the_default_model(runner, chelsea_png, tmp_path):
    out = tmp_path / "out"
    methods = "gradcam,layercam,eigencam,ablationcam,guided-gradcam"
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(out), "--method", methods])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    records = {m["name"]: m for m in summary["images"][0]["explained"][0]["methods"]}
    assert list(records) == methods.split(",")
    assert records["gradcam"]["params"]["layer"] == "bn2"
    cam = np.load(out / "chelsea" / "gradcam.npy")
    assert cam.shape == (1, 224, 224) and cam.min() >= 0 and cam.max() > 0
    assert np.load(out / "chelsea" / "guided-gradcam.npy").shape == (3, 224, 224)
    assert (out / "chelsea" / "panel.png").exists()


def test_layer_and_negative_evidence(runner, chelsea_png, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        cli,
        [
            "explain",
            str(chelsea_png),
            "-o",
            str(out),
            "--method",
            "gradcam",
            "--layer",
            "blocks.5",
            "--evidence",
            "negative",
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "summary.json").read_text())["images"][0]["explained"][0]["methods"][0]
    assert record["params"]["layer"] == "blocks.5" and record["params"]["evidence"] == "negative"
    cam = np.load(out / "chelsea" / "gradcam.npy")
    assert cam.max() <= 0 and cam.min() < 0  # the counterfactual map: regions against the class


def test_wrong_layer_is_one_message_before_any_image(runner, chelsea_png, tmp_path):
    result = runner.invoke(
        cli,
        [
            "explain",
            str(chelsea_png),
            str(chelsea_png),
            "-o",
            str(tmp_path / "o"),
            "--method",
            "gradcam",
            "--layer",
            "blocks.9",
        ],
    )
    assert result.exit_code == 2
    assert "no layer named 'blocks.9'" in result.stderr and "automatic choice is 'bn2'" in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_attention_methods_on_a_cnn(runner, chelsea_png, tmp_path):
    result = runner.invoke(
        cli, ["explain", str(chelsea_png), "-o", str(tmp_path / "o"), "--method", "attention-rollout"]
    )
    assert result.exit_code == 2
    assert "attention-rollout does not apply to this model: EfficientNet has no attention layers" in result.stderr
