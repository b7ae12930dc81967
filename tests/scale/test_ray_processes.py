"""The Ray engine's own local instance: started for the run and gone after it — after a failure, after Ctrl-C
and after success — with no raylet, GCS server or worker left behind; and an audit interrupted on Ray resumes
on Ray to the local engine's result.

Each test runs ``saliscope audit --engine ray`` in a subprocess (its own process group, as in a terminal),
records every process that descends from it while it runs, and checks after it exits that none of them, and
no process of its Ray session, is still alive.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from audit_models import Fragile, write_folder
from scale_models import SlowReader, worker_env

from saliscope.audit import AuditSettings, run_audit
from saliscope.io.folder_lock import LOCK_NAME

psutil = pytest.importorskip("psutil")
pytest.importorskip("ray.data")
pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


@dataclass
class Finished:
    pid: int
    code: int
    stdout: str
    stderr: str
    seen: dict[int, tuple[float, str]]  # every descendant seen: pid -> (start time, name)


def run_tracked(args: list[str], cwd: Path, *, interrupt_when: Callable[[], bool] | None = None) -> Finished:
    """Run ``saliscope ARGS``; press Ctrl-C (SIGINT to its process group) once ``interrupt_when()`` holds."""
    out, err = cwd / "stdout.txt", cwd / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "saliscope", *args],
            env=worker_env(),
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    seen: dict[int, tuple[float, str]] = {}
    parent = psutil.Process(child.pid)
    deadline = time.monotonic() + 400
    interrupted = False
    while child.poll() is None:
        try:
            for p in parent.children(recursive=True):
                seen.setdefault(p.pid, (p.create_time(), p.name()))
        except psutil.Error:
            pass
        if interrupt_when is not None and not interrupted and interrupt_when():
            os.killpg(child.pid, signal.SIGINT)
            interrupted = True
        if time.monotonic() > deadline:
            os.killpg(child.pid, signal.SIGKILL)
            pytest.fail("the run did not end")
        time.sleep(0.1)
    assert interrupt_when is None or interrupted, "the run ended before it could be interrupted"
    return Finished(child.pid, child.returncode, out.read_text(), err.read_text(), seen)


def assert_nothing_left(run: Finished) -> None:
    """The run started Ray (its session folder, named after the driver's process id, exists), and no process
    is left of it: none of the descendants seen while it ran, and none that names its session folder."""
    sessions = glob.glob(os.path.join(tempfile.gettempdir(), "ray", f"session_*_{run.pid}"))
    assert sessions, "the run did not start Ray"
    deadline = time.monotonic() + 20
    while True:
        alive = [f"{pid} {name}" for pid, (started, name) in run.seen.items() if _alive(pid, started)]
        alive += [f"{p.pid} {p.info['name']}" for p in psutil.process_iter(["name", "cmdline"]) if _of(p, sessions)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not alive, f"left behind: {alive}"


def _of(process: psutil.Process, sessions: list[str]) -> bool:
    command = " ".join(process.info.get("cmdline") or ())
    return any(session in command for session in sessions)


def _alive(pid: int, started: float) -> bool:
    try:
        p = psutil.Process(pid)
        return abs(p.create_time() - started) < 0.01 and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def records(out: Path) -> list[dict]:
    path = out / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_after_a_failure_no_ray_process_is_left(tmp_path: Path) -> None:
    # The failure comes once Ray runs: this machine has no GPU to give the workers.
    write_folder(tmp_path / "data", {"a": 2})
    torch.save(Fragile(), tmp_path / "model.pt")
    args = [
        "audit",
        "data",
        "--model",
        "model.pt",
        "--trust-pickle",
        "--out",
        "out",
        "--engine",
        "ray",
        "--gpus-per-worker",
        "1",
    ]
    run = run_tracked(args, tmp_path)
    assert run.code == 2, run.stderr
    assert run.stderr == (
        "error: each worker asks for 1 GPU, and the Ray cluster has 0 GPUs — leave out --gpus-per-worker, or"
        " connect to a cluster with GPUs (--ray-address)\n"
    )
    assert_nothing_left(run)
    assert not (tmp_path / "out").exists()  # nothing written, no lock, not even the folder


def test_after_ctrl_c_and_after_success_no_ray_process_is_left_and_the_audit_resumes(tmp_path: Path) -> None:
    data = write_folder(tmp_path / "data", {"a": 6, "b": 6})
    (data / "b" / "torn.png").write_bytes(b"\x89PNG\r\n\x1a\n torn")
    torch.save(SlowReader(delay=1.0), tmp_path / "slow.pt")
    args = [
        "audit",
        "data",
        "--model",
        "slow.pt",
        "--trust-pickle",
        "--out",
        "out",
        "--batch-size",
        "2",
        "--engine",
        "ray",
    ]
    out = tmp_path / "out"

    stopped = run_tracked([*args, "--workers", "2"], tmp_path, interrupt_when=lambda: len(records(out)) >= 4)
    assert stopped.code == 130, stopped.stderr
    assert "core_worker" not in stopped.stderr  # Ray's native noise is kept off the terminal
    assert "interrupted: the results so far are kept in out; continue with the same command and --resume" in (
        stopped.stderr
    )
    assert_nothing_left(stopped)
    done_before = len(records(out))
    assert 4 <= done_before < 13 and (out / "state.npz").exists() and not (out / LOCK_NAME).exists()

    resumed = run_tracked([*args, "--resume"], tmp_path)
    assert resumed.code == 1, resumed.stderr  # done; one file could not be read
    assert f"resuming: {done_before} images already audited" in resumed.stderr
    assert_nothing_left(resumed)

    local = run_audit(data, SlowReader(delay=0.0).eval(), out=tmp_path / "local", settings=AuditSettings(batch_size=2))
    assert [r["key"] for r in records(out)] == [r["key"] for r in records(local.out)]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdicts"] == local.summary["verdicts"] and summary["failures"] == local.summary["failures"]
    assert (
        summary["images"]
        == local.summary["images"]
        == {
            "found": 13,
            "audited": 12,
            "failed": 1,
            "flat": 0,
            "ignored": 0,
        }
    )
    assert resumed.stdout.splitlines()[:2] == list(local.summary["verdicts"])


def test_with_an_address_the_run_connects_and_leaves_the_cluster_running(tmp_path: Path) -> None:
    import socket

    write_folder(tmp_path / "data", {"a": 3, "b": 3})
    torch.save(SlowReader(delay=0.0), tmp_path / "reader.pt")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**worker_env(), "RAY_AUTH_MODE": "token"}  # Ray's token authentication, as clusters will have it
    ray_cli = Path(sys.executable).parent / "ray"
    temp = tempfile.mkdtemp(prefix="sr", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    start = ["start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"]
    head = subprocess.Popen(
        [str(ray_cli), *start, f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and head.poll() is None, "the Ray head did not start"
                time.sleep(0.5)
        args = ["audit", "data", "--model", "reader.pt", "--trust-pickle", "--out", "out", "--engine", "ray"]
        done = subprocess.run(
            [sys.executable, "-m", "saliscope", *args, "--ray-address", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert done.returncode == 0, done.stderr
        summary = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert summary["run"]["ray"]["cluster"] == f"127.0.0.1:{port}" and summary["images"]["audited"] == 6
        # The cluster is still there, with its raylet and GCS.
        alive = {p.name() for p in psutil.Process(head.pid).children(recursive=True) if p.is_running()}
        assert {"raylet", "gcs_server"} <= alive
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the cluster it started
        head.wait(timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
