"""One run per output folder: a lock file held in the folder for as long as a run writes there.

Two runs writing one folder would mix their results (two audits appending to one ``records.jsonl`` count
images twice). :class:`FolderLock` makes the second run refuse, in one line that names the first one::

    with FolderLock(out):
        ...  # write into out

The lock is the file ``OUT/.saliscope.lock`` holding who took it (process id, host, the process's start
time, the command line). It is created atomically (hard-linked into place, so it is never seen half
written), removed when the ``with`` block ends however it ends, and recognised as *stale* when the
process that took it is gone (killed, crashed, the machine rebooted): a stale lock is taken over. A lock
taken on another host (a shared file system) cannot be checked from here, so it is honoured until removed
by hand. A process id reused by a newer process does not keep a stale lock alive: the start time must match.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from ..core.errors import SaliscopeError

LOCK_NAME = ".saliscope.lock"
_COMMAND_CHARS = 160


class FolderInUseError(SaliscopeError):
    """Another run holds the output folder."""


class FolderLock:
    """Hold ``folder`` for one run (a context manager; also :meth:`acquire` / :meth:`release`).

    The folder is created if needed; folders this lock created are removed again on release when the run
    left them empty, so a run that wrote nothing leaves nothing behind.
    """

    def __init__(self, folder: str | os.PathLike[str], *, option: str = "--out") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.option = option
        self._token: str | None = None
        self._created: list[Path] = []

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    @property
    def held(self) -> bool:
        return self._token is not None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`FolderInUseError` naming the run that holds it."""
        if self._token is not None:
            return
        self._created = _make_folders(self.folder)
        token = secrets.token_hex(8)
        info = _owner(token)
        try:
            for _ in range(8):  # a stale lock removed by someone else in between: look again
                if _create(self.path, info):
                    self._token = token
                    return
                holder = _read(self.path)
                if holder is None:
                    continue  # gone meanwhile
                if not _stale(holder):
                    raise FolderInUseError(
                        f"{self.folder} is in use by another run ({_describe(holder)})",
                        f"wait for that run to end, or write elsewhere with another {self.option} folder "
                        f"(if no such run is going on, delete {self.path})",
                    )
                _remove_stale(self.path, holder)
            raise FolderInUseError(
                f"cannot take the lock {self.path}: other runs keep taking it",
                f"use another {self.option} folder",
            )
        except BaseException:
            self._remove_created()
            raise

    def release(self) -> None:
        """Give the lock up (only if this lock still holds it) and remove folders it created that are empty."""
        if self._token is None:
            return
        holder = _read(self.path)
        if holder is not None and holder.get("token") == self._token:
            with contextlib.suppress(OSError):
                self.path.unlink()
        self._token = None
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created = []


# ----- the lock file ----------------------------------------------------------------------------------


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; return the ones created, deepest first."""
    missing = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SaliscopeError(
            f"cannot create the output folder {folder} ({exc.strerror or exc})", "pass another output folder"
        ) from exc
    return missing


def _owner(token: str) -> dict[str, Any]:
    pid = os.getpid()
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    name = program.parent.name if program.name == "__main__.py" else program.name  # python -m saliscope
    command = " ".join([name, *sys.argv[1:]])
    if len(command) > _COMMAND_CHARS:
        command = command[: _COMMAND_CHARS - 1] + "…"
    return {
        "pid": pid,
        "host": socket.gethostname(),
        "process_start": process_start(pid),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": command,
        "token": token,
    }


def _create(path: Path, info: dict[str, Any]) -> bool:
    """Put the lock file in place if there is none; False when one exists.

    The content is written to a private file first and hard-linked to ``path`` (atomic, and it fails when
    ``path`` exists), so nobody ever reads a half-written lock. Where hard links are not supported, the
    file is created exclusively and then filled.
    """
    data = json.dumps(info).encode("utf-8")
    private = path.with_name(f"{path.name}.{info['token']}")
    try:
        with open(private, "xb") as handle:
            handle.write(data)
        try:
            os.link(private, path)
            return True
        except FileExistsError:
            return False
        except OSError:
            return _create_exclusive(path, data)
    except FileExistsError:
        return False
    except OSError as exc:
        raise SaliscopeError(
            f"cannot write the lock file {path} ({exc.strerror or exc})", "pass an output folder you can write to"
        ) from exc
    finally:
        with contextlib.suppress(OSError):
            private.unlink()


def _create_exclusive(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return True


def _read(path: Path) -> dict[str, Any] | None:
    """The lock's owner, None when there is no lock file. A lock that cannot be parsed (written by
    another program, or half-written where hard links are missing) reads as an owner nobody can check."""
    for attempt in range(5):
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError:
            text = ""
        try:
            found = json.loads(text)
            if isinstance(found, dict):
                return found
        except ValueError:
            pass
        time.sleep(0.05 * (attempt + 1))
    return {"host": "?", "pid": None, "command": "unknown (unreadable lock file)"}


def _stale(holder: dict[str, Any]) -> bool:
    """Whether the run that took the lock is certainly gone."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False  # another machine's process, or an unreadable lock: cannot be checked from here
    pid = int(holder["pid"])
    if not process_alive(pid):
        return True
    started, recorded = process_start(pid), holder.get("process_start")
    return started is not None and recorded is not None and abs(started - float(recorded)) > 1.0


def _remove_stale(path: Path, holder: dict[str, Any]) -> None:
    """Move the stale lock aside, then delete it: when two runs find it stale at once, only one rename
    succeeds, so a fresh lock taken meanwhile by the other is never deleted."""
    aside = path.with_name(f"{path.name}.stale-{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)
    except OSError:
        return
    moved = _read(aside)
    if moved is not None and moved.get("token") != holder.get("token"):
        # Someone replaced the stale lock with a live one between our read and our rename: put it back.
        with contextlib.suppress(OSError):
            os.link(aside, path)
    with contextlib.suppress(OSError):
        aside.unlink()


def _describe(holder: dict[str, Any]) -> str:
    where = "this machine" if holder.get("host") == socket.gethostname() else f"host {holder.get('host')}"
    parts = [f"pid {holder.get('pid')} on {where}"]
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    if holder.get("command"):
        parts.append(f"running: {holder['command']}")
    return ", ".join(parts)


# ----- processes --------------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a zombie counts as gone)."""
    try:
        import psutil

        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False
    except ImportError:
        pass
    if sys.platform == "win32":
        return True  # no safe probe without psutil: never call a live run's lock stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def process_start(pid: int) -> float | None:
    """When the process started (seconds since the epoch), to tell it from a later process given the same
    id; None when that cannot be read."""
    try:
        import psutil

        try:
            return float(psutil.Process(pid).create_time())
        except psutil.Error:
            return None
    except ImportError:
        pass
    try:  # Linux without psutil: the start time in clock ticks after boot
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        boot = next(
            float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        return boot + int(fields[19]) / ticks
    except (OSError, ValueError, IndexError, StopIteration):
        return None
