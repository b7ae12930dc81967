"""The explorer's work without the page: predictions, maps, verdicts on the map shown, downloads, and two
visitors at once on one model without their results mixing."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from photos import encoded, noise
from PIL import Image
from torch import nn

import saliscope as ss
from saliscope.app import AppSettings, Explorer
from saliscope.app.engine import dashed_box, evidence_of
from saliscope.core.errors import ImageError, MethodError, SaliscopeError
from saliscope.registry import MethodOptions
from saliscope.trust import Thresholds, check
from saliscope.trust.comparison import ShownMaps, shown
from saliscope.viz import display_hint, overlay

FAST = AppSettings(
    methods=("gradient", "gradcam", "integrated-gradients"),
    options=MethodOptions(n_steps=4),
    checks=("map", "deletion", "stability", "completeness"),
    thresholds=Thresholds(deletion_steps=6, deletion_random_maps=1),
)


def test_opening_a_photo_predicts_its_top_classes_as_the_model_does(tiny) -> None:
    explorer = Explorer(tiny, FAST)
    photo = noise(60, 45)
    session = explorer.open(encoded(photo), "chelsea")  # an upload wins over the sample
    assert session.name == "upload" and session.photo.size == (60, 45)
    x = tiny.preprocess(photo)
    assert torch.equal(session.x, x)
    probs = torch.softmax(tiny(x), 1)[0]
    expected = probs.topk(5)
    assert session.classes == expected.indices.tolist()
    assert [p.label for p in session.top] == [tiny.labels[i] for i in expected.indices]
    assert [p.probability for p in session.top] == pytest.approx(expected.values.tolist())
    assert session.box == pytest.approx(tiny.preprocess.crop_box(60, 45))
    assert explorer.open(None, "coffee").name == "coffee"
    with pytest.raises(ImageError, match="no photo yet"):
        explorer.open(None, None)


def test_a_large_photo_is_kept_scaled_down_but_the_model_sees_it_whole(tiny) -> None:
    settings = AppSettings(methods=("gradient",), work_side=100)
    photo = noise(400, 300)
    session = Explorer(tiny, settings).open(encoded(photo), None)
    assert session.photo.size == (100, 75)
    assert torch.equal(session.x, tiny.preprocess(photo))  # from the photo as uploaded
    assert session.box == pytest.approx([v / 4 for v in tiny.preprocess.crop_box(400, 300)])


def test_maps_are_the_methods_own_and_cams_compute_the_evidence_asked_for(tiny) -> None:
    explorer = Explorer(tiny, FAST)
    session = explorer.open(encoded(noise(50, 40)), None)
    cls = session.classes[1]
    explorer.explain(session, cls, ["gradient", "gradcam"], None)
    gradient = explorer.explanation(session, "gradient", cls, None)
    assert torch.equal(gradient.attributions, ss.Gradient(tiny).explain(session.x, cls).attributions)
    cam = explorer.explanation(session, "gradcam", cls, None)
    assert torch.equal(cam.attributions, ss.GradCAM(tiny).explain(session.x, cls).attributions)

    explorer.explain(session, cls, ["gradient", "gradcam"], "negative")
    # Negative evidence of a CAM is its counterfactual map, not the negative part of the ReLU'd one (all zero).
    counter = explorer.explanation(session, "gradcam", cls, "negative")
    assert torch.equal(counter.attributions, ss.GradCAM(tiny, evidence="negative").explain(session.x, cls).attributions)
    assert bool((counter.attributions < 0).any())
    # Other methods are explained once; the evidence only changes the view.
    assert explorer.explanation(session, "gradient", cls, "negative") is gradient
    assert len(session.maps) == 3
    view = explorer.view("gradient", "negative")
    assert (view.reduce, view.evidence) == ("sum", "negative")


def test_verdicts_judge_the_map_as_shown(tiny) -> None:
    explorer = Explorer(tiny, FAST)
    session = explorer.open(encoded(noise(50, 40)), None)
    cls = session.classes[0]
    explorer.explain(session, cls, ["gradient", "integrated-gradients"], None)
    explorer.judge(session, cls, ["gradient", "integrated-gradients"], None)
    report = explorer.report(session, "gradient", cls, None)
    assert [v.check for v in report.verdicts] == list(FAST.checks)
    e = explorer.explanation(session, "gradient", cls, None)
    view = display_hint("gradient")  # max |RGB|: what the page shows
    expected = check(
        shown(e, view),
        tiny,
        session.x,
        explainer=ShownMaps(ss.Gradient(tiny), view),
        checks=("map", "deletion", "stability"),
        thresholds=FAST.thresholds,
    )
    for check_name in ("map", "deletion", "stability"):
        assert report[check_name].values == pytest.approx(expected[check_name].values)
    # The signed sum of the gradient is another map, with another deletion curve.
    raw = check(e, tiny, session.x, checks=("deletion",), thresholds=FAST.thresholds)
    assert raw["deletion"].values != pytest.approx(report["deletion"].values)
    assert report["completeness"].status == "skipped"
    path = explorer.report(session, "integrated-gradients", cls, None)
    gap = explorer.explanation(session, "integrated-gradients", cls, None).completeness_gap
    assert path["completeness"].status in ("pass", "fail") and gap is not None


def test_a_method_that_fails_is_reported_and_the_others_go_on(tiny, monkeypatch) -> None:
    explorer = Explorer(tiny, FAST)
    session = explorer.open(encoded(noise(50, 40)), None)
    broken = explorer.explainer("gradcam", "positive")

    def fail(*_a, **_k):
        raise SaliscopeError("the layer cannot be read", "pick another layer")

    monkeypatch.setattr(broken, "explain", fail)
    explorer.explain(session, 2, ["gradcam", "gradient"], None)
    assert explorer.failure(session, "gradcam", 2, None) == "the layer cannot be read — pick another layer"
    assert explorer.explanation(session, "gradient", 2, None) is not None


def test_only_methods_that_fit_the_model_are_offered(tiny) -> None:
    explorer = Explorer(tiny, AppSettings(methods=("gradient",)))
    assert "attention-rollout" not in explorer.methods and "gradcam" in explorer.methods
    assert ("Grad-CAM", "gradcam") in explorer.titled_methods()
    with pytest.raises(MethodError, match="attention-rollout cannot run on this model"):
        Explorer(tiny, AppSettings(methods=("gradient", "attention-rollout")))
    with pytest.raises(MethodError, match="unknown evidence"):
        evidence_of("sideways")
    assert evidence_of("default") is None and evidence_of("signed") == "signed"


def test_downloads_hold_the_overlays_the_raw_attributions_and_a_summary(tiny) -> None:
    explorer = Explorer(tiny, FAST)
    photo = noise(50, 40)
    session = explorer.open(encoded(photo), None)
    cls = session.classes[0]
    explorer.explain(session, cls, ["gradient", "gradcam"], "signed")
    explorer.judge(session, cls, ["gradient"], "signed")
    files = explorer.write_downloads(session, cls, ["gradient", "gradcam"], "signed", 0.5)
    names = sorted(p.name for p in files)
    stem = f"upload-{cls}"
    # The CAM was computed signed (its .npy says so); the gradient's raw attributions serve every view.
    expected = ["gradient-signed.png", "gradient.npy", "gradcam-signed.png", "gradcam-signed.npy", "summary.json"]
    assert names == sorted(f"{stem}-{n}" for n in expected)
    folder = files[0].parent
    e = explorer.explanation(session, "gradcam", cls, "signed")
    assert np.array_equal(np.load(folder / f"{stem}-gradcam-signed.npy"), e.attributions[0].numpy())
    png = Image.open(folder / f"{stem}-gradcam-signed.png")
    expected = overlay(photo, e.saliency("sum", "signed")[0, 0], crop_box=session.box, signed=True, alpha=0.5)
    assert np.array_equal(np.asarray(png), np.asarray(dashed_box(expected, session.box)))
    summary = json.loads((folder / f"{stem}-summary.json").read_text())
    assert summary["class"] == cls and summary["label"] == tiny.labels[cls] and summary["evidence"] == "signed"
    assert [m["method"] for m in summary["methods"]] == ["gradient", "gradcam"]
    assert summary["methods"][0]["checks"]["verdicts"][0]["check"] == "map"
    assert summary["methods"][1]["checks"] is None  # not judged yet
    again = explorer.write_downloads(session, cls, ["gradient"], "signed", 0.5)
    assert again[0].parent != folder  # a folder per call: one visitor never overwrites another's files


class Watched(nn.Module):
    """The tiny model, counting how many forward passes run at the same moment (copies share the count)."""

    class Meter:
        def __init__(self) -> None:
            self.inside = self.most = 0
            self.guard = threading.Lock()

        def __deepcopy__(self, memo: dict) -> Watched.Meter:
            return self

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.meter = Watched.Meter()
        self.preprocess, self.labels = net.preprocess, net.labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.meter.guard:
            self.meter.inside += 1
            self.meter.most = max(self.meter.most, self.meter.inside)
        try:
            time.sleep(0.001)  # widen the window in which two calls could overlap
            return self.net(x)
        finally:
            with self.meter.guard:
                self.meter.inside -= 1


def test_two_visitors_at_once_get_their_own_results_and_never_share_the_model_at_the_same_time(tiny) -> None:
    model = Watched(tiny).eval()
    explorer = Explorer(model, FAST)
    photos = {"first": encoded(noise(50, 40, seed=1)), "second": encoded(noise(40, 50, seed=2))}
    names = ["gradient", "gradcam", "integrated-gradients"]

    def visit(data: bytes) -> tuple:
        session = explorer.open(data, None)
        cls = session.classes[0]
        explorer.explain(session, cls, names, None)
        explorer.judge(session, cls, names, None)
        files = explorer.write_downloads(session, cls, names, None, 0.8)
        maps = {n: explorer.explanation(session, n, cls, None).attributions for n in names}
        reports = {n: explorer.report(session, n, cls, None).as_dict() for n in names}
        return session.x, cls, maps, reports, files

    with ThreadPoolExecutor(2) as pool:
        together = dict(zip(photos, pool.map(visit, photos.values()), strict=True))
    assert model.meter.most == 1  # the lock: never two passes at once

    for key, data in photos.items():
        alone = visit(data)
        x, cls, maps, reports, files = together[key]
        assert torch.equal(x, alone[0]) and cls == alone[1]
        for n in names:
            torch.testing.assert_close(maps[n], alone[2][n])
        assert [v["status"] for r in reports.values() for v in r["verdicts"]] == [
            v["status"] for r in alone[3].values() for v in r["verdicts"]
        ]
        assert {f.parent for f in files}.isdisjoint(
            {f.parent for f in together["second" if key == "first" else "first"][4]}
        )
    first, second = together["first"], together["second"]
    assert not torch.equal(first[0], second[0])
