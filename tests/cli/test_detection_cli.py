"""`saliscope explain` and `saliscope compare` on a detector and a segmentation model: the detections printed,
the target chosen with --detection / --box / --label / --mask / --region, the box or region drawn on every
overlay, the target in summary.json, and one clear line (exit 2, nothing written) for every misuse.

The models are torchvision's, built by the real loader with random weights (``pretrained=False``: no
download), then made small and quick: a 64-pixel input side, 10 proposals, a score threshold of 0 (random
weights score every box near chance; with 0 every image has detections)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from saliscope.cli.main import cli
from saliscope.models.preprocess import Preprocess
from saliscope.viz.outline import LINE

DETECTOR = "torchvision:fasterrcnn_mobilenet_v3_large_320_fpn"
SEGMENTER = "torchvision:deeplabv3_mobilenet_v3_large"
WIDTH, HEIGHT = 120, 80


@pytest.fixture(autouse=True)
def small_torchvision_models(monkeypatch):
    """``--model torchvision:...`` loads the real architecture with random weights, made small."""
    import saliscope.models

    loader = saliscope.models.load_model
    built: dict[str, torch.nn.Module] = {}

    def load(spec=None, *args, **kwargs):
        if spec not in (DETECTOR, SEGMENTER):
            return loader(spec, *args, **kwargs)
        if spec not in built:
            with torch.random.fork_rng():
                torch.manual_seed(0)
                model = loader(spec, pretrained=False)
            if spec == DETECTOR:
                model.transform.min_size, model.transform.max_size = (64,), 96
                model.roi_heads.score_thresh, model.roi_heads.detections_per_img = 0.0, 6
                model.rpn._pre_nms_top_n = model.rpn._post_nms_top_n = {"training": 10, "testing": 10}
            else:
                model.preprocess = Preprocess(size=48, resize=48)
            built[spec] = model
        return built[spec]

    monkeypatch.setattr(saliscope.models, "load_model", load)


@pytest.fixture
def photo(tmp_path, chelsea_array) -> Path:
    path = tmp_path / "cat.png"
    Image.fromarray(chelsea_array).resize((WIDTH, HEIGHT)).save(path)
    return path


def one_error_line(result) -> str:
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def outlined(png: Path) -> np.ndarray:
    """Where the outline's colour is in a written picture."""
    return (np.asarray(Image.open(png).convert("RGB")) == np.array(LINE, dtype=np.uint8)).all(-1)


def test_explain_a_detection_prints_the_detections_draws_the_box_and_records_the_target(runner, photo, tmp_path):
    out = tmp_path / "out"
    args = ["explain", str(photo), "--model", DETECTOR, "-m", "gradient,gradcam,drise", "--n-perturbations", "8"]
    result = runner.invoke(cli, [*args, "--detection", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    image = summary["images"][0]
    found = image["detections"]
    assert len(found) == 6 and [d["rank"] for d in found] == list(range(6))
    assert [d["score"] for d in found] == sorted((d["score"] for d in found), reverse=True)
    assert f"cat.png  ({WIDTH}x{HEIGHT}): 6 detections" in result.output
    top = found[0]
    assert f"  0. {top['label']:<32} {top['score']:7.2%}  box " in result.output
    assert "... and 1 more (--detection 0..5)" in result.output
    assert summary["target"] == {"kind": "detector", "detection": 2}
    explained = image["explained"][0]
    assert explained["target"]["kind"] == "detection" and explained["target"]["detection"] == 2
    assert explained["target"]["box"] == pytest.approx(found[2]["box"], abs=0.01)
    assert explained["target"]["label"] == found[2]["label"] and explained["target"]["score"] == found[2]["score"]
    assert image["size"] == [WIDTH, HEIGHT] == image["input_size"] and image["crop_box"] == [0, 0, WIDTH, HEIGHT]
    assert [m["name"] for m in explained["methods"]] == ["gradient", "gradcam", "drise"]
    for name in ("gradient", "gradcam", "drise"):
        assert np.load(out / "cat" / f"{name}.npy").shape[-2:] == (HEIGHT, WIDTH)
        drawn = outlined(out / "cat" / f"{name}.png")
        x0, _, x1, _ = (round(v) for v in found[2]["box"])
        assert drawn.any() and drawn[:, max(0, x0 - 3) : x1 + 4].any() and not drawn[:, x1 + 5 :].any()
    assert outlined(out / "cat" / "panel.png").sum() > 50  # on the photo and every map of the panel


def test_a_detector_without_options_explains_its_most_confident_detection(runner, photo, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(cli, ["explain", str(photo), "--model", DETECTOR, "-m", "gradient", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "explaining detection 0: " in result.output
    assert json.loads((out / "summary.json").read_text())["images"][0]["explained"][0]["target"]["detection"] == 0


def test_a_box_with_a_label_and_a_label_alone(runner, photo, tmp_path):
    out = tmp_path / "out"
    base = ["explain", str(photo), "--model", DETECTOR, "-m", "gradient"]
    result = runner.invoke(cli, [*base, "--box", "10,5,70,60", "--label", "person", "-o", str(out)])
    assert result.exit_code == 0, result.output
    target = json.loads((out / "summary.json").read_text())["images"][0]["explained"][0]["target"]
    assert target == {
        "kind": "box",
        "detection": None,
        "box": [10.0, 5.0, 70.0, 60.0],
        "class": 1,
        "label": "person",
        "score": None,
        "iou_threshold": 0.5,
    }
    found = json.loads((out / "summary.json").read_text())["images"][0]["detections"]
    wanted = found[3]["label"]
    first = next(d for d in found if d["label"] == wanted)
    again = runner.invoke(cli, [*base, "--label", wanted, "-o", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    chosen = json.loads((tmp_path / "again" / "summary.json").read_text())["images"][0]["explained"][0]["target"]
    assert chosen["detection"] == first["rank"] and chosen["label"] == wanted


def test_explain_a_class_over_a_mask_or_a_rectangle_of_a_segmentation_model(runner, photo, tmp_path):
    mask = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
    mask[20:60, 30:90] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    base = ["explain", str(photo), "--model", SEGMENTER, "-m", "gradient,gradcam"]
    result = runner.invoke(
        cli, [*base, "--label", "cat", "--mask", str(tmp_path / "mask.png"), "-o", str(tmp_path / "m")]
    )
    assert result.exit_code == 0, result.output
    assert "explaining cat over the mask (25.0% of the image)" in result.output
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    assert summary["target"] == {"kind": "segmenter", "label": "cat", "mask": str(tmp_path / "mask.png")}
    explained = summary["images"][0]["explained"][0]["target"]
    assert explained["class"] == 8 and explained["region"] == "the mask" and explained["area"] == pytest.approx(0.25)
    drawn = outlined(tmp_path / "m" / "cat" / "gradient.png")
    assert drawn[20:60, 30:90].any() and not drawn[:15].any() and not drawn[65:].any()
    rect = runner.invoke(cli, [*base, "--label", "8", "--region", "30,20,90,60", "-o", str(tmp_path / "r")])
    assert rect.exit_code == 0, rect.output
    rect_target = json.loads((tmp_path / "r" / "summary.json").read_text())["images"][0]["explained"][0]["target"]
    assert rect_target["rectangle"] == [30.0, 20.0, 90.0, 60.0] and rect_target["area"] == pytest.approx(0.25)
    plain = runner.invoke(cli, [*base, "-o", str(tmp_path / "p")])  # the largest class found, where it is found
    assert plain.exit_code == 0, plain.output
    assert "of the image" in plain.output and "over the region it predicts" in plain.output


def test_compare_takes_the_same_target_options(runner, photo, tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", str(photo), "--model", DETECTOR, "-m", "gradient,drise", "--n-perturbations", "8"]
    result = runner.invoke(cli, [*args, "--timing-runs", "1", "--detection", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "compare.json").read_text())
    assert record["target"]["detection"] == 1 and len(record["detections"]) == 6
    assert [m["method"] for m in record["methods"]] == ["gradient", "drise"]
    assert (out / "compare.png").exists() and (out / "compare.html").exists()


@pytest.mark.parametrize(
    ("model", "args", "message"),
    [
        (
            DETECTOR,
            ["--target", "3"],
            "error: --target '3' names a class of a classifier, and this model is a detector — explain one of its"
            " detections with --detection K, or a box with --box x0,y0,x1,y1 [--label NAME]",
        ),
        (
            DETECTOR,
            ["--box", "10,10,30"],
            "error: --box needs four numbers x0,y0,x1,y1, got 3 ('10,10,30') — pass --box x0,y0,x1,y1",
        ),
        (DETECTOR, ["--box", "30,10,10,40"], "error: --box '30,10,10,40' is empty: it needs x1 > x0 and y1 > y0"),
        (DETECTOR, ["--box", "10,10,30,abc"], "error: --box '10,10,30,abc' has a part that is not a number"),
        (
            DETECTOR,
            ["--box", "10,10,300,40"],
            f"error: --box 10,10,300,40 is not inside the {WIDTH}×{HEIGHT} image — give --box within the image:"
            f" 0 <= x0 < x1 <= {WIDTH}, 0 <= y0 < y1 <= {HEIGHT}",
        ),
        (DETECTOR, ["--box", "-5,10,30,40"], f"error: --box -5,10,30,40 is not inside the {WIDTH}×{HEIGHT} image"),
        (
            DETECTOR,
            ["--detection", "9"],
            "error: detection 9 asked for, but the detector found 6 (0..5) — use --detection 0..5",
        ),
        (DETECTOR, ["--detection", "1", "--box", "1,2,3,4"], "error: --detection and --box both say what to explain"),
        (DETECTOR, ["--detection", "1", "--label", "cat"], "error: --label goes with --box"),
        (DETECTOR, ["--mask", "m.png"], "error: --mask is for segmentation models, and this model is a detector"),
        (DETECTOR, ["--top-k", "2"], "error: --top-k ranks a classifier's classes, and this model is a detector"),
        (DETECTOR, ["--label", "zebra-ish"], "error: --label: unknown label 'zebra-ish'"),
        (DETECTOR, ["--label", "toaster"], "error: the detector found no 'toaster' in"),
        (DETECTOR, ["--box", "1,2,3,4", "--region", "1,2,3,4"], "error: --box is for detectors and --region for"),
        (
            SEGMENTER,
            ["--detection", "0"],
            "error: --detection is for detectors, and this model is a segmentation model — name the class with"
            " --label NAME, and the region with --mask MASK.png or --region x0,y0,x1,y1",
        ),
        (SEGMENTER, ["--label", "cat", "--mask", "{small}"], f"is 10×10 pixels, the image {WIDTH}×{HEIGHT}"),
        (SEGMENTER, ["--label", "cat", "--mask", "{empty}"], "is empty (no nonzero pixel)"),
        (SEGMENTER, ["--label", "cat", "--region", "0,0,500,10"], "error: --region 0,0,500,10 is not inside"),
        (SEGMENTER, ["--label", "99"], "error: --label 99 is out of range: the model has 21 classes (0..20)"),
        (SEGMENTER, ["--target", "cat"], "error: --target 'cat' is for classifiers, and this model is a segmentation"),
        (
            "default",
            ["--box", "1,2,30,40"],
            "error: --box needs a detector or a segmentation model, and this model is a classifier (it returns class"
            " scores) — use --target CLASS",
        ),
        ("default", ["--mask", "m.png"], "error: --mask needs a detector or a segmentation model"),
        (
            "default",
            ["-m", "drise"],
            "error: drise explains the detections of an object detector, and this model is a classifier",
        ),
    ],
)
def test_every_misuse_is_one_line_and_writes_nothing(runner, photo, tmp_path, model, args, message):
    Image.fromarray(np.full((10, 10), 255, dtype=np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((HEIGHT, WIDTH), dtype=np.uint8)).save(tmp_path / "empty.png")
    args = [a.format(small=tmp_path / "small.png", empty=tmp_path / "empty.png") for a in args]
    out = tmp_path / "out"
    methods = [] if "-m" in args else ["-m", "gradient"]
    result = runner.invoke(cli, ["explain", str(photo), "--model", model, *methods, "-o", str(out), *args])
    assert result.exit_code == 2, result.output
    line = one_error_line(result)
    assert line.startswith(message) if message.startswith("error:") else message in line, line
    assert not out.exists()


def test_method_all_skips_what_does_not_apply():
    from saliscope.cli import pipeline
    from saliscope.registry import available

    settings = pipeline.Settings(methods=tuple(available()), out=Path("unused"), all_methods=True)
    notes: list[str] = []
    assert "drise" not in pipeline.applicable(torch.nn.Conv2d(3, 3, 1), settings, notes.append, "classifier")
    assert "note: skipping drise: it explains a detector's detections, and this model is a classifier" in notes
    assert "drise" in pipeline.applicable(torch.nn.Conv2d(3, 3, 1), settings, notes.append, "detector")
