"""Simulated operating-system refusals: the tests run as root, which ignores chmod."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest


def deny_listing(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``folder.iterdir()`` fail as a folder without read permission does."""
    real_iterdir = Path.iterdir

    def iterdir(self: Path):
        if self == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
