"""Griffe extension: read resilient's `Example:` docstring sections as Google `Examples:`.

The codebase writes `Example:` (singular), which Google-style parsing in griffe does not
recognise as a section: it renders as an admonition of plain Markdown, so `>>>` sessions run
together into one paragraph and a result such as `[True, False]` is read as a broken
cross-reference. Renamed to `Examples:`, doctest sessions render as code and fenced blocks
inside the section keep working.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_SINGULAR = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _SINGULAR.sub(r"\g<indent>Examples:", docstring.value)
