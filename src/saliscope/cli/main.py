"""The ``saliscope`` command: parses, calls the library, prints. Nothing else lives here.

Exit codes: 0 success; 1 some images of a multi-image run failed (the others are complete);
2 a user error (bad option, unknown method / model / label, unreadable image: one ``error:`` line);
3 an internal error (a bug: one line, ``--debug`` shows the traceback).
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from .. import __version__
from ..core.allocator import keep_freed_memory
from ..core.errors import SaliscopeError
from .app import app
from .audit import audit
from .common import EXIT_INTERNAL, EXIT_USER, debug_option, state
from .compare import compare
from .evaluate import evaluate
from .explain import demo, explain, methods


class SaliscopeGroup(click.Group):
    """Turns errors into one line on stderr: user errors exit 2, bugs exit 3 (traceback with --debug)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except SaliscopeError as exc:
            _fail(f"error: {_one_line(exc.cli_message())}", EXIT_USER)
        except Exception as exc:  # the one place that turns bugs into a short message
            if state(ctx).debug:
                traceback.print_exc(file=sys.stderr)
                sys.stderr.flush()
                _fail(f"internal error: {type(exc).__name__}: {_one_line(str(exc))}", EXIT_INTERNAL)
            _fail(
                f"internal error: {type(exc).__name__}: {_one_line(str(exc))}\nrun with --debug for the traceback",
                EXIT_INTERNAL,
            )


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    raise click.exceptions.Exit(code)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@click.group(cls=SaliscopeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="saliscope", message="%(prog)s %(version)s")
@debug_option
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Saliency maps for PyTorch image models: which pixels raise (or lower) a class score?

    Examples:

    \b
        saliscope demo
        saliscope explain cat.jpg --method all
        saliscope explain photos/ --model timm:resnet18 --target "tabby cat" --out results

    On Linux the command keeps freed tensor memory for reuse (large chunks of rows run up to 1.35x faster);
    SALISCOPE_CPU_ALLOCATOR=system leaves the C allocator as it is.
    """
    keep_freed_memory()
    state(ctx)


for _command in (explain, demo, methods, evaluate, compare, audit, app):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="saliscope")
