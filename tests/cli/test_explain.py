"""`saliscope explain` end to end on a real photo with the real default model."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from saliscope.cli.main import cli
from saliscope.core.errors import NonFiniteError
from saliscope.models.default import DEFAULT_PREPROCESS
from saliscope.viz import overlay

FAST = ["--n-samples", "2", "--n-steps", "2"]
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def all_files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_explain_writes_maps_panel_and_summary(runner, chelsea_png, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    # top-5 printed with probabilities, and where the results went
    assert "tiger cat" in result.stdout and "%" in result.stdout
    assert f"results in {out}" in result.stdout

    methods = ["gradient", "smoothgrad", "integrated-gradients"]
    expected = sorted(
        [f"chelsea/{m}.{ext}" for m in methods for ext in ("png", "npy")] + ["chelsea/panel.png", "summary.json"]
    )
    assert all_files(out) == expected  # and no temporary files left behind

    for m in methods:
        attributions = np.load(out / "chelsea" / f"{m}.npy")
        assert attributions.shape == (3, 224, 224) and attributions.dtype == np.float32
        assert np.isfinite(attributions).all() and np.abs(attributions).max() > 0
        with Image.open(out / "chelsea" / f"{m}.png") as png:
            assert png.size == (451, 300)  # drawn over the original photo, not the 224 crop
    with Image.open(out / "chelsea" / "panel.png") as panel_png:
        assert panel_png.width > 3 * panel_png.height

    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"] == methods and summary["failures"] == []
    image = summary["images"][0]
    assert image["path"] == str(chelsea_png) and image["size"] == [451, 300]
    assert image["crop_box"] == pytest.approx(list(DEFAULT_PREPROCESS.crop_box(451, 300)))
    probs = [t["probability"] for t in image["top5"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    (explained,) = image["explained"]
    assert explained["class"] == image["top5"][0]["index"] and explained["class"] in CAT_CLASSES
    assert "cat" in explained["label"] or "tabby" in explained["label"]
    by_name = {m["name"]: m for m in explained["methods"]}
    assert list(by_name) == methods
    assert by_name["integrated-gradients"]["params"]["n_steps"] == 2
    assert by_name["smoothgrad"]["params"]["n_samples"] == 2 and by_name["smoothgrad"]["params"]["seed"] == 0
    assert by_name["integrated-gradients"]["cost"]["forward_passes"] >= 2
    assert "completeness_gap" in by_name["integrated-gradients"] and "completeness_gap" not in by_name["gradient"]
    assert by_name["gradient"]["display"] == {"reduce": "max-abs", "evidence": "absolute"}
    assert by_name["integrated-gradients"]["display"] == {"reduce": "sum", "evidence": "signed"}


def test_overlay_file_is_the_saved_attributions_drawn_on_the_photo(runner, chelsea_png, chelsea_array, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        cli, ["explain", str(chelsea_png), "-o", str(out), "-m", "gradient,integrated-gradients", *FAST]
    )
    assert result.exit_code == 0, result.output
    photo = Image.fromarray(chelsea_array)
    box = DEFAULT_PREPROCESS.crop_box(*photo.size)
    gradient = torch.from_numpy(np.load(out / "chelsea" / "gradient.npy"))
    expect = overlay(photo, gradient.abs().amax(0), crop_box=box, signed=False)
    with Image.open(out / "chelsea" / "gradient.png") as png:
        assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(expect))
    ig = torch.from_numpy(np.load(out / "chelsea" / "integrated-gradients.npy"))
    expect = overlay(photo, ig.sum(0), crop_box=box, signed=True)
    with Image.open(out / "chelsea" / "integrated-gradients.png") as png:
        got = np.asarray(png.convert("RGB"))
    assert np.array_equal(got, np.asarray(expect))
    # outside the model's crop the photo is untouched
    left = int(box[0])
    assert np.array_equal(got[:, :left], chelsea_array[:, :left])


def test_target_by_label_and_by_index_and_evidence_override(runner, chelsea_png, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        cli,
        [
            "explain",
            str(chelsea_png),
            "-o",
            str(out),
            "-m",
            "integrated-gradients",
            "--target",
            "tabby",
            "--evidence",
            "negative",
            *FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    explained = json.loads((out / "summary.json").read_text())["images"][0]["explained"][0]
    assert explained["class"] == 281 and explained["label"] == "tabby"
    assert explained["methods"][0]["display"] == {"reduce": "sum", "evidence": "negative"}

    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(out), "-m", "gradient", "--target", "409"])
    assert result.exit_code == 0, result.output
    explained = json.loads((out / "summary.json").read_text())["images"][0]["explained"][0]
    assert explained["class"] == 409 and explained["label"] == "analog clock"


def test_top_k_explains_each_ranked_class(runner, chelsea_png, tmp_path, default_model):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(out), "-m", "gradient", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    assert all_files(out / "chelsea") == [
        "gradient-top1.npy",
        "gradient-top1.png",
        "gradient-top2.npy",
        "gradient-top2.png",
        "panel-top1.png",
        "panel-top2.png",
    ]
    image = json.loads((out / "summary.json").read_text())["images"][0]
    assert [e["rank"] for e in image["explained"]] == [1, 2]
    assert [e["class"] for e in image["explained"]] == [t["index"] for t in image["top5"][:2]]
    # Each rank's map is that class's gradient (the batch of targets is explained as each alone).
    x = default_model.preprocess(Image.open(chelsea_png))
    for e in image["explained"]:
        x_ = x.clone().requires_grad_()
        (grad,) = torch.autograd.grad(default_model(x_)[0, e["class"]], x_)
        saved = np.load(out / "chelsea" / f"gradient-top{e['rank']}.npy")
        np.testing.assert_allclose(saved, grad[0].numpy(), rtol=1e-4, atol=1e-6)


def test_one_bad_image_does_not_stop_the_run(runner, chelsea_png, corrupt_jpg, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(corrupt_jpg), str(chelsea_png), "-o", str(out), "-m", "gradient"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "1 of 2 images failed:" in result.stderr
    failed_lines = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(failed_lines) == 1 and failed_lines[0].startswith(f"  {corrupt_jpg}: ")
    assert "damaged" in failed_lines[0]
    assert not (out / "broken").exists()
    assert all_files(out) == ["chelsea/gradient.npy", "chelsea/gradient.png", "chelsea/panel.png", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert [i["path"] for i in summary["images"]] == [str(chelsea_png)]
    assert summary["failures"] == [{"path": str(corrupt_jpg), "error": summary["failures"][0]["error"]}]
    assert "damaged" in summary["failures"][0]["error"]


def test_a_folder_is_expanded_and_same_names_get_their_own_folders(runner, chelsea_png, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(chelsea_png, tmp_path / "a" / "cat.png")
    Image.open(chelsea_png).save(tmp_path / "b" / "cat.jpg")
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), "-m", "gradient"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["cat", "cat-2", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert [i["output_dir"] for i in summary["images"]] == ["cat", "cat-2"]


def test_a_failing_method_leaves_no_files_for_that_image(runner, chelsea_png, tmp_path, monkeypatch):
    from saliscope import registry

    real_create = registry.create

    class Broken:
        def explain(self, x, target):
            raise NonFiniteError("NaN in the attributions", "try float64")

    def create(name, model, options=None):
        return Broken() if name == "integrated-gradients" else real_create(name, model, options)

    monkeypatch.setattr(registry, "create", create)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(out), "-m", "gradient,integrated-gradients"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["error: NaN in the attributions — try float64"]
    assert not out.exists()  # gradient succeeded, but nothing is written until every method has


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "gradiant"], "unknown method 'gradiant'"),
        (["--target", "zebraa"], "unknown label 'zebraa'"),
        (["--target", "1000"], "class index 1000 is out of range"),
        (["--target", "-1"], "class index -1 is out of range"),
        (["--top-k", "1001"], "--top-k must be between 1 and 1000"),
        (["--model", "timm:no_such_model_xyz"], "no_such_model_xyz"),
    ],
)
def test_user_errors_are_one_line_and_write_nothing(runner, chelsea_png, tmp_path, args, message):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists()


def test_missing_file_and_empty_folder_are_one_line_errors(runner, tmp_path):
    out = tmp_path / "out"
    (tmp_path / "empty").mkdir()
    for target, message in [(tmp_path / "nope.png", "not found"), (tmp_path / "empty", "no images found")]:
        result = runner.invoke(cli, ["explain", str(target), "-o", str(out)])
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
        assert "Traceback" not in result.output and not out.exists()


def test_top_k_and_target_together_is_a_usage_error(runner, chelsea_png, tmp_path):
    result = runner.invoke(cli, ["explain", str(chelsea_png), "--top-k", "2", "--target", "5"])
    assert result.exit_code == 2 and "cannot be combined" in result.stderr


def test_internal_errors_are_short_unless_debug(runner, chelsea_png, tmp_path, monkeypatch):
    from saliscope.cli import pipeline

    def explode(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(pipeline, "explain_image", explode)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(chelsea_png), "-o", str(out)])
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        "internal error: ZeroDivisionError: a bug",
        "run with --debug for the traceback",
    ]
    for args in (["--debug", "explain", str(chelsea_png)], ["explain", str(chelsea_png), "--debug"]):
        result = runner.invoke(cli, [*args, "-o", str(out)])
        assert result.exit_code == 3
        assert "Traceback" in result.stderr and "ZeroDivisionError: a bug" in result.stderr


def test_methods_lists_every_registered_method(runner):
    from saliscope import registry

    result = runner.invoke(cli, ["methods"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == registry.available()
    assert all(registry.get(line.split()[0]).summary in line for line in lines)


def test_a_bug_on_one_image_is_reported_and_the_others_complete(runner, chelsea_png, tmp_path, monkeypatch):
    from saliscope.cli import pipeline

    other = tmp_path / "other.png"
    shutil.copy(chelsea_png, other)
    real = pipeline.explain_image

    def flaky(source, *args, **kwargs):
        if source.stem == "other":
            raise IndexError("off by one")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(pipeline, "explain_image", flaky)
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(chelsea_png), str(other), "-o", str(out), "-m", "gradient"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    tail = result.stderr.strip().splitlines()[-3:]
    assert tail == [
        "1 of 2 images failed:",
        f"  {other}: internal error: IndexError: off by one",
        "run with --debug for the traceback",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["chelsea", "summary.json"]


def test_warnings_are_printed_once_and_recorded(runner, chelsea_png, tmp_path):
    out = tmp_path / "out"
    # VarGrad is non-negative, so its negative evidence is an all-zero map: a flat-map warning.
    result = runner.invoke(
        cli,
        ["explain", str(chelsea_png), "-o", str(out), "-m", "vargrad", "--evidence", "negative", "--n-samples", "2"],
    )
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 1 and "flat" in warned[0] and str(chelsea_png) in warned[0]
    image = json.loads((out / "summary.json").read_text())["images"][0]
    assert len(image["warnings"]) == 1 and "flat" in image["warnings"][0]
    with Image.open(out / "chelsea" / "vargrad.png") as png, Image.open(chelsea_png) as photo:
        assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(photo.convert("RGB")))


def test_check_prints_a_verdict_per_method_and_writes_the_page(runner, chelsea_png, tmp_path):
    out = tmp_path / "out"
    args = ["explain", str(chelsea_png), "-o", str(out), "--check", "-m", "gradient,integrated-gradients"]
    result = runner.invoke(cli, [*args, "--n-steps", "3"])
    assert result.exit_code == 0, result.output
    assert "index.html" in all_files(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checked"] is True
    methods = {m["name"]: m for m in summary["images"][0]["explained"][0]["methods"]}
    ig = methods["integrated-gradients"]
    checks = {v["check"]: v for v in ig["checks"]["verdicts"]}
    assert list(checks) == ["map", "deletion", "stability", "sanity", "completeness"]
    assert "completeness" not in {v["check"] for v in methods["gradient"]["checks"]["verdicts"]}
    # Three fixed steps leave a large gap: the verdict says so, with the fix, and the line shows it.
    assert abs(ig["completeness_gap"]) > 0.05 * abs(ig["input_scores"] - ig["baseline_scores"])
    assert checks["completeness"]["status"] == "fail" and "adaptively" in checks["completeness"]["reason"]
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith("Integrated Gradients"))
    assert "FAIL" in line and "completeness gap" in line
    page = (out / "index.html").read_text()
    assert "Integrated Gradients" in page and "chelsea" in page
    assert re.search(r"fails [a-z, ]*completeness", page)  # the overview names every failed check
