"""run_audit on disk: the verdict on a hand-set corner reader, bad files, atomic outputs, and exact resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from audit_models import PatchReader, write_folder

from saliscope import GradCAM
from saliscope.audit import AuditSettings, run_audit, scan_image_folder
from saliscope.audit.dataset import crop_warnings
from saliscope.core.errors import InputError, SaliscopeError
from saliscope.models.preprocess import Preprocess

SETTINGS = AuditSettings(method="gradcam", batch_size=4, top_n=3)


class Interrupting:
    """An explainer that behaves like ``inner`` until its ``fail_at``-th call, which raises (a Ctrl-C)."""

    def __init__(self, inner: Any, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = inner, fail_at, 0
        self.name, self.model = inner.name, inner.model

    def params(self) -> dict[str, Any]:
        return self.inner.params()

    def explain(self, x: torch.Tensor, target: Any = None) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.inner.explain(x, target)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = write_folder(tmp_path / "data", {"corner": 9, "other": 7, "third": 6})
    (root / "corner" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "other" / "empty.jpg").write_bytes(b"")
    (root / "other" / "notes.txt").write_text("not an image")
    (root / "third" / ".DS_Store").write_bytes(b"\0")
    (root / "empty-class").mkdir()
    return root


def without_run(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "run"}


def test_a_corner_reader_is_flagged_in_every_class_and_bad_files_are_listed(data: Path, tmp_path: Path) -> None:
    model = PatchReader().eval()
    outcome = run_audit(data, model, out=tmp_path / "out", settings=SETTINGS)
    s = outcome.summary
    assert [c["name"] for c in s["classes"]] == ["corner", "other", "third"]
    for c in s["classes"]:
        assert c["status"] == "shortcut" and c["lead"] == "top-left"
        top_left = next(r for r in c["regions"] if r["name"] == "top-left")
        assert top_left["mass"] == pytest.approx(1.0) and top_left["share"] == 1.0
        assert c["accuracy"] is None  # not every folder names one of the model's labels: not judged
    assert s["verdicts"][0].startswith("class 'corner': 100% of saliency mass in the top-left corner")
    assert s["images"] == {"found": 24, "audited": 22, "failed": 2, "flat": 0, "ignored": 2}
    failed = dict(outcome.failures)
    assert set(failed) == {"corner/broken.png", "other/empty.jpg"}
    assert "not an image file Pillow can read" in failed["corner/broken.png"]
    assert "empty (0 bytes)" in failed["other/empty.jpg"]
    # Hidden files (.DS_Store) are skipped silently; other non-images and empty class folders are listed.
    assert {i["path"]: i["reason"] for i in s["ignored"]} == {
        "other/notes.txt": "not an image file (suffix .txt)",
        "empty-class/": "class folder without images",
    }
    # The most concentrated images are listed, at most top_n per class, each with its mass.
    assert [r["mass"] for r in s["classes"][0]["suspicious"]] == pytest.approx([1.0, 1.0, 1.0])
    page = outcome.report_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # per class: mean image, mean map, spread, and the 3 most concentrated images
    assert "possible shortcut" in page and page.count("data:image/png;base64,") == 3 * (3 + 3)
    assert (
        page.count("class='hist'") == 3 and page.count("class='bar'") == 3 * 10
    )  # one bar per region: border, 4 corners, 4 edges, spot
    assert "corner/broken.png" in page and "src='http" not in page  # self-contained
    assert json.loads(outcome.summary_path.read_text()) == json.loads(json.dumps(s))


def test_resume_after_an_interruption_gives_exactly_the_uninterrupted_result(data: Path, tmp_path: Path) -> None:
    model = PatchReader().eval()
    whole = run_audit(data, model, out=tmp_path / "whole", settings=SETTINGS)

    out = tmp_path / "broken-off"
    # Call 1 warms the explainer up, calls 2-3 are batches 1-2: Ctrl-C arrives in batch 3.
    with pytest.raises(KeyboardInterrupt):
        run_audit(data, model, out=out, settings=SETTINGS, explainer=Interrupting(GradCAM(model), fail_at=4))
    assert sorted(p.name for p in out.iterdir()) == ["records.jsonl", "state.npz"]  # no report, no temporary file
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line)["key"] for line in lines)
    # A kill in the middle of a later write leaves half a line beyond the checkpoint: it is dropped and redone.
    with open(out / "records.jsonl", "a") as handle:
        handle.write('{"key": "third/003.png", "class": "thi')

    resumed = run_audit(data, model, out=out, settings=SETTINGS, resume=True)
    assert resumed.resumed and resumed.audited_now == 22 - 8  # the unreadable files sort last in their classes
    assert without_run(resumed.summary) == without_run(whole.summary)
    assert (out / "records.jsonl").read_bytes() == (tmp_path / "whole" / "records.jsonl").read_bytes()
    assert (out / "report.html").read_bytes() == (tmp_path / "whole" / "report.html").read_bytes()

    # Resuming a finished audit redoes nothing and says the same.
    again = run_audit(data, model, out=out, settings=SETTINGS, resume=True)
    assert again.audited_now == 0 and without_run(again.summary) == without_run(whole.summary)


def test_an_existing_audit_is_never_overwritten_and_settings_must_match(data: Path, tmp_path: Path) -> None:
    model = PatchReader().eval()
    out = tmp_path / "out"
    run_audit(data, model, out=out, settings=AuditSettings(method="gradcam", limit=4))
    with pytest.raises(SaliscopeError, match="already holds an audit") as info:
        run_audit(data, model, out=out, settings=SETTINGS)
    assert "--resume" in str(info.value.fix)
    with pytest.raises(SaliscopeError, match=r"other settings.*method: was 'gradcam', now 'gradient'"):
        run_audit(data, model, out=out, settings=AuditSettings(method="gradient"), resume=True)
    # A larger --limit on resume simply audits more of the same data.
    more = run_audit(data, model, out=out, settings=AuditSettings(method="gradcam", limit=10), resume=True)
    assert more.summary["images"]["audited"] + more.summary["images"]["failed"] == 10 and more.audited_now == 6


def test_limit_takes_images_in_turn_from_each_class(data: Path, tmp_path: Path) -> None:
    outcome = run_audit(data, PatchReader().eval(), out=tmp_path / "out", settings=AuditSettings(limit=6))
    keys = [json.loads(line)["key"] for line in (tmp_path / "out" / "records.jsonl").read_text().splitlines()]
    assert keys == [
        "corner/000.png",
        "other/000.png",
        "third/000.png",
        "corner/001.png",
        "other/001.png",
        "third/001.png",
    ]
    assert [c["status"] for c in outcome.summary["classes"]] == ["too-few"] * 3
    assert "only 2 images with a usable saliency map — too few to judge (need 5)" in outcome.summary["verdicts"][0]


def test_folder_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="data folder not found"):
        scan_image_folder(tmp_path / "nope")
    write_folder(tmp_path / "loose" / "x", {".": 2})
    with pytest.raises(InputError, match="2 images but no class sub-folders") as info:
        scan_image_folder(tmp_path / "loose" / "x")
    assert "DATA_DIR/<class>/<image>" in str(info.value.fix)
    (tmp_path / "hollow" / "a").mkdir(parents=True)
    with pytest.raises(InputError, match="no images found"):
        scan_image_folder(tmp_path / "hollow")


def test_cropping_preprocessing_is_warned_about(data: Path, tmp_path: Path) -> None:
    cropping = Preprocess(size=24, resize=32, mean=(0, 0, 0), std=(1, 1, 1))
    assert "outer 12% of each side" in crop_warnings(cropping)[0] and "--no-crop" in crop_warnings(cropping)[0]
    assert crop_warnings(Preprocess(size=32, resize=32)) == []
    notes: list[str] = []
    outcome = run_audit(
        data,
        PatchReader(size=24).eval(),
        out=tmp_path / "out",
        settings=AuditSettings(limit=3),
        preprocess=cropping,
        warn=notes.append,
    )
    assert notes == crop_warnings(cropping)
    assert any("on average 44% of an image's area was never seen" in w for w in outcome.summary["warnings"])
    assert outcome.summary["visibility"]["cropped"] == 3


def test_the_mean_image_is_the_mean_of_the_models_views(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", {"a": 5, "b": 5}, seed=4)
    settings = AuditSettings(view_size=8, limit=10)
    outcome = run_audit(root, PatchReader().eval(), out=tmp_path / "out", settings=settings)
    assert outcome.summary["images"]["audited"] == 10
    from PIL import Image

    views = np.stack([np.asarray(Image.open(root / "a" / f"{i:03d}.png"), np.float64) / 255 for i in range(5)])
    expected = views.reshape(5, 8, 4, 8, 4, 3).mean((0, 2, 4)).transpose(2, 0, 1)
    state = np.load(tmp_path / "out" / "state.npz")
    np.testing.assert_allclose(state["c0.pixels"] / 5, expected, atol=1e-6)


def test_label_target_explains_the_folder_class_and_accuracy_counts_predictions(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", {"corner": 3, "other": 3})  # folder names are the model's labels
    model = PatchReader().eval()
    predicted = run_audit(root, model, out=tmp_path / "p", settings=AuditSettings(method="gradient"))
    # Class 0 always wins, so the "other" folder is predicted wrongly every time.
    assert [c["accuracy"] for c in predicted.summary["classes"]] == [1.0, 0.0]
    labelled = run_audit(root, model, out=tmp_path / "l", settings=AuditSettings(method="gradient", target="label"))
    records = [json.loads(line) for line in (tmp_path / "l" / "records.jsonl").read_text().splitlines()]
    assert [(r["class"], r["explained"], r["flat"]) for r in records[:2]] == [("corner", 0, False), ("other", 1, True)]
    other = labelled.summary["classes"][1]
    assert other["accuracy"] is None and other["flat"] == 3 and other["status"] == "too-few"


def test_an_image_the_model_cannot_explain_is_listed_and_the_rest_audited(tmp_path: Path) -> None:
    from audit_models import Fragile
    from PIL import Image

    root = write_folder(tmp_path / "data", {"a": 5})
    Image.new("RGB", (32, 32)).save(root / "a" / "black.png")  # a black patch: NaN scores
    outcome = run_audit(root, Fragile().eval(), out=tmp_path / "out", settings=AuditSettings(batch_size=6))
    assert [k for k, _ in outcome.failures] == ["a/black.png"]
    assert "cannot be explained: the model produced NaN or Inf scores" in outcome.failures[0][1]
    assert outcome.summary["images"]["audited"] == 5 and outcome.summary["classes"][0]["status"] == "shortcut"
    # A fault of the set-up, not of one image, still ends the audit.
    all_black = tmp_path / "black"
    for i in range(3):
        (all_black / "a").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32)).save(all_black / "a" / f"{i}.png")
    with pytest.raises(SaliscopeError, match="NaN or Inf"):
        run_audit(all_black, Fragile().eval(), out=tmp_path / "out2")
