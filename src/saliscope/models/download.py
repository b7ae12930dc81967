"""Getting pretrained weights: look in the caches first, fail in seconds when the network is absent.

Left alone, huggingface_hub retries an unreachable host with back-off for most of a minute, and
urllib waits on a dead connection for as long as the OS lets it. A user without internet should be
told at once where to put the file instead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch

DOWNLOAD_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 3.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@contextmanager
def socket_timeout(seconds: float = DOWNLOAD_TIMEOUT_S) -> Iterator[None]:
    """Give new sockets a timeout for the duration of the block, then restore the caller's default."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def torch_hub_checkpoint(url: str) -> Path:
    """Where ``torch.hub.load_state_dict_from_url`` keeps (or would keep) the file at ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def host_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Can we open a TCP connection to ``url``'s host? Returns (ok, reason when not ok).

    Behind a proxy a direct connection says nothing, so we report reachable and let the real
    download (under :func:`socket_timeout`) decide.
    """
    if any(os.environ.get(var) for var in _PROXY_VARS):
        return True, ""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"{host} unreachable: {exc}"


def hf_cached_file(repo_id: str, filenames: list[str]) -> Path | None:
    """The first of ``filenames`` already in the Hugging Face cache for ``repo_id``, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo, _, revision = repo_id.partition("@")
    for filename in filenames:
        found = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def hf_endpoint() -> str:
    """The Hugging Face endpoint in use (``HF_ENDPOINT`` mirrors included)."""
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except ImportError:
        return "https://huggingface.co"
