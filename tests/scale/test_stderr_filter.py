"""Ray's native noise is kept off the terminal, and nothing else is: every other byte written to file
descriptor 2 comes through, in order, a progress bar's partial line included."""

from __future__ import annotations

import os

import pytest

from saliscope.audit.engines.stderr_filter import native_noise_dropped

NOISE = (
    b"[2026-12-06 18:45:25,760 E 16099 16099] core_worker.cc:2465: Actor with class name: 'MapWorker(Map(A))'"
    b" and ID: 'd5' has constructor arguments in the object store and max_restarts > 0. If the arguments in"
    b" the object store go out of scope or are lost, the actor restart will fail.\n"
)


@pytest.mark.skipif(os.name != "posix", reason="the filter works on file descriptors, on POSIX only")
def test_only_the_known_noise_is_dropped(capfd: pytest.CaptureFixture[str]) -> None:
    with native_noise_dropped():
        os.write(2, b"first line\n" + NOISE[:40])
        os.write(2, NOISE[40:] + b"[2026-12-06 18:45:26,001 E 1 1] a real Ray error\n")
        os.write(2, "from the C++ side, or Python's sys.stderr — ünïcode\n".encode())
        os.write(2, b"\rauditing:  50%|#####     | 8/16")  # a progress bar: no newline, shown at once
    os.write(2, b"\nafter\n")
    assert capfd.readouterr().err == (
        "first line\n[2026-12-06 18:45:26,001 E 1 1] a real Ray error\n"
        "from the C++ side, or Python's sys.stderr — ünïcode\n"
        "\rauditing:  50%|#####     | 8/16\nafter\n"
    )
