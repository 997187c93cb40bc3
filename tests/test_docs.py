"""Every ```python block in README.md and docs/ runs, so the documentation cannot rot.

Blocks of one page run in order in one namespace, so a page can build an example up step
by step, and top-level `await` works. A block right after an HTML comment `<!-- no-run -->`
is skipped: keep that for fragments such as signatures.

Each page runs in its own interpreter: pages install OpenTelemetry providers or switch
telemetry off globally, and none of that may leak into the rest of the suite. Run one page
by hand with `python tests/test_docs.py docs/getting-started.md`.

A page that talks to Redis writes `redis://localhost:6379/0`; the test runs it against the
test session's Redis server instead (the `redis_url` fixture), by that URL in
`RESILIENT_DOCS_REDIS_URL`.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NO_RUN = "<!-- no-run -->"
#: The Redis a page's snippets name, and the variable that points them at another one.
DOCS_REDIS = "redis://localhost:6379/0"
DOCS_REDIS_ENV = "RESILIENT_DOCS_REDIS_URL"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_PYTHON = {"python", "py", "python3"}


@dataclass(frozen=True)
class Block:
    """One fenced Python block: its source and the line its first line of code is on."""

    source: str
    line: int
    run: bool


def pages() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [path for path in found if path.is_file()]


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown page, in order, with their `no-run` marks."""
    lines = text.splitlines()
    blocks: list[Block] = []
    previous = ""  # the last non-blank line outside a block
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            if lines[i].strip():
                previous = lines[i].strip()
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        language = (match["info"].split() or [""])[0].lstrip(".").lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence[0] * len(fence))
            and not lines[j].strip().strip(fence[0])
        ):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        if language in _PYTHON:
            blocks.append(
                Block(textwrap.dedent("\n".join(body)), line=i + 2, run=previous != NO_RUN)
            )
        previous = ""
        i = j + 1
    return blocks


def run_page(path: Path) -> int:
    """Run every runnable block of `path` in order, in one namespace; return their count."""
    blocks = [block for block in python_blocks(path.read_text()) if block.run]
    redis_url = os.environ.get(DOCS_REDIS_ENV)
    module = types.ModuleType("docs_page_" + re.sub(r"\W", "_", path.stem))
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    with asyncio.Runner() as runner:
        for block in blocks:
            source = block.source
            if redis_url:
                source = source.replace(DOCS_REDIS, redis_url)
            tree = ast.parse(source, filename=str(path))
            ast.increment_lineno(tree, block.line - 1)
            code = compile(tree, str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            if code.co_flags & inspect.CO_COROUTINE:
                runner.run(eval(code, namespace))
            else:
                exec(code, namespace)
    return len(blocks)


def pages_with_snippets() -> list[Path]:
    """Pages with at least one runnable block (the API reference pages have none)."""
    return [page for page in pages() if any(block.run for block in python_blocks(page.read_text()))]


@pytest.mark.parametrize(
    "page", pages_with_snippets(), ids=lambda path: path.relative_to(ROOT).as_posix()
)
def test_page_snippets_run(page: Path, request: pytest.FixtureRequest) -> None:
    env = dict(os.environ)
    env.pop("OTEL_PYTHON_TRACER_PROVIDER", None)
    env.pop("OTEL_PYTHON_METER_PROVIDER", None)
    if DOCS_REDIS in page.read_text():
        env[DOCS_REDIS_ENV] = request.getfixturevalue("redis_url")
    done = subprocess.run(
        [sys.executable, "-W", "error", __file__, str(page)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (
        f"a snippet in {page.relative_to(ROOT)} failed:\n{done.stdout}\n{done.stderr}"
    )


def test_blocks_are_found_with_their_marks() -> None:
    page = textwrap.dedent(
        """\
        Intro.

        ```python
        x = 1
        ```

        <!-- no-run -->
        ```python
        def signature(...): ...
        ```

        !!! example
            ```python
            y = x + 1
            ```

        ```bash
        make demo
        ```
        """
    )
    blocks = python_blocks(page)
    assert [(b.source.strip(), b.line, b.run) for b in blocks] == [
        ("x = 1", 4, True),
        ("def signature(...): ...", 9, False),
        ("y = x + 1", 14, True),
    ]


def test_api_reference_covers_every_public_name() -> None:
    import resilient
    import resilient.exceptions

    targets = {
        line.removeprefix(":::").strip()
        for page in (ROOT / "docs" / "reference").glob("*.md")
        for line in page.read_text().splitlines()
        if line.startswith(":::")
    }
    missing = [
        name
        for name in resilient.__all__
        if name != "__version__"
        and f"resilient.{name}" not in targets
        and not (name in resilient.exceptions.__all__ and "resilient.exceptions" in targets)
    ]
    assert not missing, f"add to docs/reference/: {missing}"
    for module in ("exceptions", "storage", "telemetry", "testing"):
        assert f"resilient.{module}" in targets, f"add ::: resilient.{module} to docs/reference/"


if __name__ == "__main__":
    count = run_page(Path(sys.argv[1]).resolve())
    print(f"{count} snippet(s) ran")
