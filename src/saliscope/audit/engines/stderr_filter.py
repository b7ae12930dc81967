"""Ray's native noise kept off the terminal: lines its C++ core writes to the driver's stderr that say nothing
to a user of the engine."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

# Lines Ray's C++ core writes to the driver's stderr that say nothing to a user of this engine. Ray Data keeps
# the actors' constructor arguments alive for the whole run, which is what this warning is about.
_NATIVE_NOISE = (b"has constructor arguments in the object store and max_restarts > 0",)


@contextlib.contextmanager
def native_noise_dropped() -> Iterator[None]:
    """Drop :data:`_NATIVE_NOISE` lines from this process's stderr (file descriptor 2) inside the block.

    Ray's core library writes them straight to the descriptor, past Python's ``sys.stderr``; a thread passes
    everything else through unchanged and at once (a progress bar's partial line too). Only on POSIX, and
    only when descriptor 2 is open.
    """
    if os.name != "posix":
        yield
        return
    try:
        original = os.dup(2)
    except OSError:
        yield
        return
    read_end, write_end = os.pipe()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pass_through, args=(read_end, original), daemon=True, name="saliscope-stderr")
    pump.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last writer closes: the thread drains it and ends
        pump.join(timeout=5)
        os.close(original)


def _pass_through(source: int, target: int) -> None:
    pending = b""
    try:
        while True:
            chunk = os.read(source, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not any(n in line for n in _NATIVE_NOISE))
            if pending and not pending.startswith(b"["):  # not a log line of Ray's: no need to wait for its end
                kept, pending = kept + pending, b""
            if kept:
                _write_all(target, kept)
        if pending:
            _write_all(target, pending)
    except OSError:
        pass
    finally:
        os.close(source)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
