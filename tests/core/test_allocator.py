"""Freed tensor memory is kept for reuse: a second large allocation touches no fresh pages."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from saliscope.core import allocator

glibc = pytest.mark.skipif(not allocator.on_glibc(), reason="glibc's mallopt only")


_LOOP = """
import resource, sys, torch
from saliscope.core.allocator import keep_freed_memory
print(keep_freed_memory())
torch.ones(1 << 24)  # one 64 MiB block, far above glibc's own mmap threshold: the heap grows once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    block = torch.ones(1 << 24)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@glibc
@pytest.mark.parametrize("setting", ["", "system"])
def test_large_blocks_are_reused_instead_of_mapped_anew(setting: str) -> None:
    # A fresh process: in a long one, where a block lands (and whether it can be reused at once) depends on
    # everything allocated before it.
    env = {**os.environ, allocator.ENV: setting}
    done = subprocess.run([sys.executable, "-c", _LOOP], capture_output=True, text=True, env=env, check=True)
    applied, faults = done.stdout.split()
    pages = (1 << 26) // resource.getpagesize()
    if setting == "system":  # glibc maps each block anew: 30 × 16,384 page faults
        assert applied == "False" and int(faults) >= 27 * pages, faults
    else:  # kept: the heap settles after a few (torch's aligned blocks creep up until freed ones merge)
        assert applied == "True" and int(faults) <= 10 * pages, faults


def test_the_system_allocator_is_left_alone_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setenv(allocator.ENV, "system")
    called = []
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda *a: called.append(a))
    assert allocator.keep_freed_memory() is False
    assert not called
