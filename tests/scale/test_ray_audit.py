"""The audit on Ray equals the local audit: on a planted-artefact data set with a trained model, with an actor's
process killed half-way, and resumed after an interruption — all on a 2-CPU Ray instance with 2 workers, the
size at which actors that took every CPU would starve the readers and hang."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from audit_models import Fragile
from PIL import Image
from scale_models import KillOnce

from saliscope import GradCAM
from saliscope.audit import AuditSettings, run_audit
from saliscope.core.errors import SaliscopeError
from saliscope.datasets import Artefact, make_shortcut_dataset
from saliscope.io.folder_lock import process_alive
from saliscope.train import train_tiny_cnn

pytest.importorskip("ray.data")
pytestmark = [
    pytest.mark.ray,
    pytest.mark.usefixtures("ray_instance"),
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
]

SETTINGS = AuditSettings(method="gradcam", batch_size=5, top_n=4)
RAY = dict(engine="ray", workers=2)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny CNN trained on a data set whose 'pneumonia' class carries a corner marker; the test split with
    two unreadable files; and the local engine's audit of it, run with one thread (as each Ray worker is)."""
    root = tmp_path_factory.mktemp("planted")
    data = make_shortcut_dataset(
        root / "data",
        shortcut_class="pneumonia",
        artefact=Artefact(kind="square", position="top-left", size=0.15),
        n_train=40,
        n_test=12,
        image_size=32,
        seed=0,
    )
    model = train_tiny_cnn(data.train, epochs=5, width=8, seed=0)
    (data.test / "normal" / "zz-torn.png").write_bytes(b"\x89PNG\r\n\x1a\n torn")
    (data.test / "pneumonia" / "zz-empty.jpg").write_bytes(b"")
    with one_thread():
        local = run_audit(data.test, model, out=root / "local", settings=SETTINGS)
    return {"root": root, "test": data.test, "model": model, "local": local}


@pytest.fixture(scope="module")
def on_ray(planted: dict[str, Any]) -> Any:
    return run_audit(planted["test"], planted["model"], out=planted["root"] / "ray", settings=SETTINGS, **RAY)


class one_thread:
    """torch on one thread inside the block: a Ray worker's thread count, so results match bit for bit."""

    def __enter__(self) -> None:
        self.threads = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *_: object) -> None:
        torch.set_num_threads(self.threads)


def without_run(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "run"}


def assert_same_summary(a: dict[str, Any], b: dict[str, Any], atol: float = 1e-12) -> None:
    """Equal apart from the run's timings, numbers to ``atol``: the Ray engine merges per-batch statistics
    (:meth:`AuditStats.merge`) where the local one adds image by image, which moves the last bits."""

    def same(x: Any, y: Any, where: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            assert x.keys() == y.keys(), where
            for key in x:
                same(x[key], y[key], f"{where}.{key}")
        elif isinstance(x, list) and isinstance(y, list):
            assert len(x) == len(y), where
            for i, (p, q) in enumerate(zip(x, y, strict=True)):
                same(p, q, f"{where}[{i}]")
        elif isinstance(x, float) and isinstance(y, float):
            assert x == pytest.approx(y, abs=atol, nan_ok=True), where
        else:
            assert x == y, where

    same(without_run(a), without_run(b), "summary")


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_ray_audit_equals_the_local_audit(planted: dict[str, Any], on_ray: Any) -> None:
    local = planted["local"]
    # The model learned the marker, and both engines say so in the same words.
    assert local.summary["flagged"] == ["pneumonia"]
    assert on_ray.summary["verdicts"] == local.summary["verdicts"]
    assert on_ray.summary["failures"] == local.summary["failures"]
    assert {f["path"] for f in on_ray.summary["failures"]} == {"normal/zz-torn.png", "pneumonia/zz-empty.jpg"}
    # Same images, same order, same numbers: each worker computes with one thread, as the local run did here.
    assert (on_ray.out / "records.jsonl").read_bytes() == (local.out / "records.jsonl").read_bytes()
    assert_same_summary(on_ray.summary, local.summary)
    assert (on_ray.out / "report.html").read_bytes() == (local.out / "report.html").read_bytes()
    # The pool fitted 2 workers beside the readers on 2 CPUs, and each batch went through it once.
    spread = on_ray.summary["run"]["ray"]
    assert spread["workers"] == 2 and spread["cpus_per_worker"] == 0.75 and spread["cluster"] == "existing instance"
    assert on_ray.audited_now == local.audited_now == 24
    assert sorted(p.name for p in on_ray.out.iterdir()) == ["records.jsonl", "report.html", "state.npz", "summary.json"]


def test_ray_audit_matches_a_local_audit_with_more_threads_within_float_noise(
    planted: dict[str, Any], on_ray: Any, tmp_path: Path
) -> None:
    torch.set_num_threads(max(2, torch.get_num_threads()))
    local = run_audit(planted["test"], planted["model"], out=tmp_path / "local", settings=SETTINGS)
    assert on_ray.summary["verdicts"] == local.summary["verdicts"] and on_ray.summary["flagged"] == ["pneumonia"]
    for mine, theirs in zip(on_ray.summary["classes"], local.summary["classes"], strict=True):
        assert mine["status"] == theirs["status"] and mine["flagged"] == theirs["flagged"]
        for a, b in zip(mine["regions"], theirs["regions"], strict=True):
            assert a["name"] == b["name"] and a["mass"] == pytest.approx(b["mass"], abs=1e-5)
            assert a["share"] == pytest.approx(b["share"], abs=1e-9)
        np.testing.assert_allclose(mine["mean_map"], theirs["mean_map"], atol=1e-5)
    ours, theirs = records(on_ray.out), records(local.out)
    assert [(r["key"], r.get("explained"), r.get("error")) for r in ours] == [
        (r["key"], r.get("explained"), r.get("error")) for r in theirs
    ]
    for a, b in zip(ours, theirs, strict=True):
        if a.get("masses") is not None:
            np.testing.assert_allclose(a["masses"], b["masses"], atol=1e-5)


def test_a_worker_killed_mid_run_loses_and_doubles_nothing(planted: dict[str, Any], tmp_path: Path) -> None:
    model = planted["model"]
    marker = tmp_path / "killed"
    # Each worker's call 1 warms it up; the first to reach call 3 (its second batch) dies inside it, after
    # its first batch came home. Ray starts a new actor and runs the lost batch again.
    explainer = KillOnce(GradCAM(model), marker, at=3)
    killed = run_audit(planted["test"], model, out=tmp_path / "out", settings=SETTINGS, explainer=explainer, **RAY)
    victim = int(marker.read_text())
    assert victim != os.getpid() and not process_alive(victim)
    local = planted["local"]
    assert (killed.out / "records.jsonl").read_bytes() == (local.out / "records.jsonl").read_bytes()
    assert_same_summary(killed.summary, local.summary)
    assert killed.audited_now == 24


class StopAfter:
    """A progress reporter that presses Ctrl-C once ``n`` batches have come home."""

    def __init__(self, n: int) -> None:
        self.n, self.batches = n, 0

    def start(self, total: int, done: int) -> None:
        self.total, self.done = total, done

    def advance(self, _images: int) -> None:
        self.batches += 1
        if self.batches == self.n:
            raise KeyboardInterrupt


def test_an_interrupted_ray_audit_resumes_to_the_same_result(planted: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_audit(planted["test"], planted["model"], out=out, settings=SETTINGS, progress=StopAfter(2), **RAY)
    assert sorted(p.name for p in out.iterdir()) == ["records.jsonl", "state.npz"]  # checkpointed, lock freed
    assert len(records(out)) == 2 * SETTINGS.batch_size
    # the first two batches, in order, each once: the local run's first records
    assert records(out) == records(planted["local"].out)[: 2 * SETTINGS.batch_size]

    progress = StopAfter(0)
    resumed = run_audit(
        planted["test"], planted["model"], out=out, settings=SETTINGS, resume=True, progress=progress, **RAY
    )
    assert progress.done == 10 and progress.total == 16 and resumed.resumed  # 26 files, 10 done before
    local = planted["local"]
    assert (out / "records.jsonl").read_bytes() == (local.out / "records.jsonl").read_bytes()
    assert_same_summary(resumed.summary, local.summary)
    # Resuming a finished audit has nothing to do, and does not start Ray workers for it.
    again = run_audit(planted["test"], planted["model"], out=out, settings=SETTINGS, resume=True, **RAY)
    assert again.audited_now == 0 and "ray" not in again.summary["run"]
    assert_same_summary(again.summary, local.summary)


def test_a_set_up_fault_raised_on_a_worker_reaches_the_caller_as_itself(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / "black" / "a").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32)).save(tmp_path / "black" / "a" / f"{i}.png")
    with pytest.raises(SaliscopeError, match="NaN or Inf") as info:
        run_audit(tmp_path / "black", Fragile().eval(), out=tmp_path / "out", **RAY)
    assert type(info.value).__module__.startswith("saliscope.")  # not Ray's wrapper
    assert not (tmp_path / "out" / ".saliscope.lock").exists()


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
