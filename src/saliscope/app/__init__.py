"""The browser explorer (``saliscope app``): upload a photo, see each method's map with its verdicts, switch the
class, the evidence and the opacity, run the measured comparison, download the maps.

Needs Gradio (``pip install -e ".[app]"``); only :mod:`saliscope.app.ui` and :func:`launch` import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .engine import DEFAULT_APP_METHODS, AppSettings, Explorer, Session
from .uploads import read_upload, sample_photo

if TYPE_CHECKING:
    import gradio as gr
    from torch import nn

INSTALL_HINT = 'pip install -e ".[app]"'


def require_gradio() -> None:
    """Import Gradio, or raise one :class:`~saliscope.SaliscopeError` naming the extra to install."""
    from ..core.errors import SaliscopeError

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise SaliscopeError("the explorer needs Gradio, which is not installed", INSTALL_HINT) from None


def build_app(model: nn.Module | Explorer, settings: AppSettings | None = None) -> gr.Blocks:
    """The explorer's page for ``model`` (or a ready :class:`Explorer`), not yet launched."""
    require_gradio()
    from .ui import build_app as build

    explorer = model if isinstance(model, Explorer) else Explorer(model, settings)
    return build(explorer)


def launch(
    model: nn.Module | Explorer,
    settings: AppSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    block: bool = True,
    quiet: bool = False,
) -> Any:
    """Serve the explorer on ``host:port`` (``127.0.0.1``: this machine only). ``block=False`` returns the
    launched page at once (``page.close()`` stops it)."""
    from .render import CSS

    explorer = model if isinstance(model, Explorer) else Explorer(model, settings)
    page = build_app(explorer)
    page.queue(default_concurrency_limit=1)
    page.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        quiet=quiet,
        ssr_mode=False,
        share=False,
        max_file_size=explorer.settings.max_upload_bytes,
        css=CSS,
        footer_links=[],
        show_error=False,
    )
    return page


__all__ = [
    "DEFAULT_APP_METHODS",
    "INSTALL_HINT",
    "AppSettings",
    "Explorer",
    "Session",
    "build_app",
    "launch",
    "read_upload",
    "require_gradio",
    "sample_photo",
]
