"""One run per output folder: a second audit or explanation on a folder in use refuses in one line naming the
first; a lock left by a process that is gone is taken over. The end-to-end case is the one that corrupted
audits before the lock: ``--resume`` started while the first run was still going."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from audit_models import PatchReader, write_folder
from click.testing import CliRunner
from scale_models import SlowReader, worker_env

from saliscope.audit import AuditSettings, run_audit
from saliscope.cli.main import cli
from saliscope.io.folder_lock import LOCK_NAME, FolderInUseError, FolderLock, process_alive, process_start


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(done.stdout)
    assert not process_alive(pid)
    return pid


def plant_lock(folder: Path, **owner: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": process_start(os.getpid())}
    info.update({"since": "2026-01-01 00:00:00", "command": "saliscope audit data", "token": "planted", **owner})
    path = folder / LOCK_NAME
    path.write_text(json.dumps(info))
    return path


def test_the_lock_is_held_for_the_run_and_leaves_nothing_behind(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    with FolderLock(out) as lock:
        held = json.loads((out / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname() and lock.held
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # written in one piece, no stray file
    assert not (tmp_path / "new").exists()  # folders it made, still empty, are removed again
    (tmp_path / "kept").mkdir()
    with FolderLock(tmp_path / "kept"):
        (tmp_path / "kept" / "result.txt").write_text("x")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["result.txt"]


def test_a_second_run_is_refused_in_one_line_naming_the_first(tmp_path: Path) -> None:
    with FolderLock(tmp_path), pytest.raises(FolderInUseError) as info:
        FolderLock(tmp_path, option="--out").acquire()
    line = info.value.cli_message()
    assert f"{tmp_path} is in use by another run (pid {os.getpid()} on this machine, since " in line
    assert "wait for that run to end, or write elsewhere with another --out folder" in line
    assert f"delete {tmp_path / LOCK_NAME}" in line and "\n" not in line
    assert not (tmp_path / LOCK_NAME).exists()  # the first run's lock is gone with it


def test_a_lock_whose_process_is_gone_is_taken_over(tmp_path: Path) -> None:
    plant_lock(tmp_path, pid=dead_pid())
    with FolderLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    # A live process that is not the one that took the lock (its id was reused) does not hold it either.
    plant_lock(tmp_path, process_start=process_start(os.getpid()) - 3600)  # type: ignore[operator]
    with FolderLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["token"] != "planted"
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("owner", "named"),
    [
        ({"host": "other-node"}, "on host other-node"),
        ({"pid": None, "host": "?"}, "on host ?"),  # a lock nobody can check
    ],
)
def test_a_lock_that_cannot_be_checked_from_here_is_honoured(tmp_path: Path, owner: dict, named: str) -> None:
    plant_lock(tmp_path, **owner)
    with pytest.raises(FolderInUseError, match=named):
        FolderLock(tmp_path).acquire()
    (tmp_path / LOCK_NAME).write_text("{not json")
    with pytest.raises(FolderInUseError, match="unreadable lock file"):
        FolderLock(tmp_path).acquire()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "data", {"a": 6, "b": 6})


def test_audit_and_explain_refuse_a_folder_in_use(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    plant_lock(out)  # this process holds it: certainly alive
    with pytest.raises(FolderInUseError):
        run_audit(data, PatchReader().eval(), out=out, settings=AuditSettings(limit=2))
    model = tmp_path / "reader.pt"
    torch.save(PatchReader(), model)
    for command in (["audit", str(data)], ["explain", str(data / "a"), "--method", "gradcam"]):
        result = CliRunner().invoke(cli, [*command, "--model", str(model), "--trust-pickle", "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: {out} is in use by another run (pid {os.getpid()}")
        assert "running: saliscope audit data" in result.stderr and len(result.stderr.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written beside it


def test_resume_while_the_first_run_goes_on_is_refused_and_after_a_kill_completes_the_audit(
    data: Path, tmp_path: Path
) -> None:
    """Before the lock, this doubled records: 400 images became 480."""
    model = tmp_path / "slow.pt"
    torch.save(SlowReader(delay=0.4), model)
    out = tmp_path / "out"
    args = ["audit", str(data), "--model", str(model), "--trust-pickle", "--out", str(out), "--batch-size", "2"]
    first = subprocess.Popen(
        [sys.executable, "-m", "saliscope", *args],
        env=worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        records = out / "records.jsonl"
        deadline = time.monotonic() + 120
        while not (records.exists() and records.read_text().count("\n") >= 2):
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.1)
        resumed = CliRunner().invoke(cli, [*args, "--resume"])
        assert resumed.exit_code == 2 and f"in use by another run (pid {first.pid} on this machine" in resumed.stderr
        assert "running: saliscope audit" in resumed.stderr
    finally:
        first.kill()  # SIGKILL: no clean-up, the lock stays behind
        first.wait()
    assert (out / LOCK_NAME).exists()
    resumed = CliRunner().invoke(cli, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    keys = [json.loads(line)["key"] for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(keys) == sorted(f"{c}/{i:03d}.png" for c in "ab" for i in range(6))  # each image once
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"]["audited"] == 12 and not (out / LOCK_NAME).exists()
