"""Render the package's reStructuredText roles (``:class:`~saliscope.Explanation```, ``:meth:`explain```) as
Markdown code spans in the API reference, the way Sphinx would show them: ``~`` keeps the last name,
functions and methods get ``()``."""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(meth|func|class|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def plain(text: str) -> str:
    """Every role in ``text`` as a code span."""

    def span(match: re.Match[str]) -> str:
        role, short, target = match.groups()
        shown = target.lstrip(".").rsplit(".", 1)[-1] if short else target
        if role in ("meth", "func") and not shown.endswith(")"):
            shown += "()"
        return f"`{shown}`"

    return _ROLE.sub(span, text)


class SphinxRoles(griffe.Extension):
    """Rewrites docstrings as they are loaded; the source is untouched."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
