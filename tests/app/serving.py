"""The explorer served in-process on a free port of 127.0.0.1, for the server and browser tests."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from optional import require_gradio

from saliscope.app import Explorer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(explorer: Explorer) -> Iterator[str]:
    """The page's URL while it is served; stopped afterwards."""
    require_gradio()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from saliscope.app import launch

    page = launch(explorer, port=free_port(), block=False, quiet=True)
    try:
        yield page.local_url
    finally:
        page.close()


# Gradio's queue calls pandas in ways pandas 3 warns about; not ours to fix, and not worth the noise.
QUIET_GRADIO = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated.*"),
]
