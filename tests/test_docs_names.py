"""Every name the documentation shows exists, and what is not built yet says it is coming.

The documentation is README.md, every page under docs/, the package description in
pyproject.toml and every docstring under src/resilient (the API reference pages render
them). It is read in *sections*: a Markdown page is cut at its headings, and each docstring
is a section of its own.

- Every dotted name `resilient.x[.y]` (in code blocks, inline code or prose) and every name in
  `from resilient[.x] import a, b` must import and resolve with `getattr`, or be a span,
  attribute, event or metric name that the library emits.
- A name from `COMING_NAMES` or a word from `COMING_WORDS` (a part that is not built yet) may
  appear only in a paragraph (or table) that also says "coming" (or "not built yet", "not
  available yet"); a code block may rely on the prose of its section. So the docs never
  promise such a part in the present tense. When a part lands, drop its entries here and the
  "coming" from the docs.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "resilient"

#: Names of parts that are not built yet. A dotted entry also covers every name under it
#: (`resilient.asgi` covers `resilient.asgi.HealthApp`); a bare one matches the
#: identifier wherever it stands, alone or after a dot.
COMING_NAMES: tuple[str, ...] = ()

#: Words in prose for the same parts.
COMING_WORDS: tuple[str, ...] = ()

_MARKER = re.compile(r"\bcoming\b|\bnot (?:built|available) yet\b", re.IGNORECASE)
_DOTTED = re.compile(r"(?<![\w.])resilient(?:\.[A-Za-z_]\w*)+")
_FROM_IMPORT = re.compile(
    r"^[ \t>.]*from[ \t]+(resilient(?:\.\w+)*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.MULTILINE
)
_HEADING = re.compile(r"^#{1,6}\s")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


@dataclass(frozen=True)
class Section:
    """A piece of documentation read as one: where it is, and its text."""

    where: str
    text: str


def markdown_sections(name: str, text: str) -> Iterator[Section]:
    """A Markdown page cut at its headings (a `#` inside a code block is not a heading)."""
    heading, fence = "", ""
    lines: list[str] = []
    for line in text.splitlines():
        match = _FENCE.match(line)
        if match and (not fence or match[1].startswith(fence)):
            fence = "" if fence else match[1]
        elif not fence and _HEADING.match(line):
            yield Section(f"{name} {heading}".rstrip(), "\n".join(lines))
            heading, lines = line.strip(), []
        lines.append(line)
    yield Section(f"{name} {heading}".rstrip(), "\n".join(lines))


def docstring_sections(path: Path) -> Iterator[Section]:
    """Each docstring of a module: of the module, its classes and functions, its attributes."""
    name = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for statement in node.body:
            if (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            ):
                yield Section(f"{name}:{statement.lineno}", statement.value.value)


@functools.cache
def sections() -> list[Section]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = [
        section
        for page in pages
        for section in markdown_sections(page.relative_to(ROOT).as_posix(), page.read_text())
    ]
    for path in sorted(SRC.rglob("*.py")):
        found.extend(docstring_sections(path))
    description = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["description"]
    found.append(Section("pyproject.toml [project] description", description))
    return found


@functools.cache
def emitted_telemetry_names() -> frozenset[str]:
    """Span, attribute, event and metric names the library emits: every `"resilient.x.y"`
    string in its source, and `resilient.<kind>` for each policy's span."""
    names: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if _DOTTED.fullmatch(node.value):
                    names.add(node.value)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "PolicyTelemetry"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names.add(f"resilient.{node.args[0].value}")
    return frozenset(names)


def resolves(dotted: str) -> bool:
    """Whether `dotted` names a module, or an attribute reached from the longest module."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            found: object = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # no such module: try the name as an attribute of its parent
            raise
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def documented_names(text: str) -> set[str]:
    """Every `resilient.x.y` in `text`, and `resilient.x.a` for `from resilient.x import a`."""
    names = set(_DOTTED.findall(text))
    for match in _FROM_IMPORT.finditer(text):
        imported = re.sub(r"#[^\n]*", "", match[2]).strip("()")
        for item in imported.split(","):
            words = item.split()
            if words and words[0] != "*":
                names.add(f"{match[1]}.{words[0]}")
    return names


@functools.cache
def _coming_patterns() -> list[tuple[str, re.Pattern[str]]]:
    patterns = [(name, re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")) for name in COMING_NAMES]
    patterns += [(word, re.compile(word, re.IGNORECASE)) for word in COMING_WORDS]
    return patterns


def is_coming(name: str) -> bool:
    return any(
        name == entry
        or name.startswith(entry + ".")
        or (("." not in entry) and entry in name.split("."))
        for entry in COMING_NAMES
    )


def test_every_documented_name_resolves() -> None:
    telemetry = emitted_telemetry_names()
    unknown = sorted(
        f"{section.where}: {name}"
        for section in sections()
        for name in documented_names(section.text)
        if not is_coming(name) and name not in telemetry and not resolves(name)
    )
    assert not unknown, (
        "the documentation names what does not exist (fix the name, or, for a part that is "
        "not built yet, add it to COMING_NAMES and say it is coming):\n" + "\n".join(unknown)
    )


def paragraphs(text: str) -> Iterator[tuple[str, bool]]:
    """The blocks of `text` that blank lines separate, each with whether it is fenced code.
    A fenced block is one paragraph, blank lines and all; a table is one paragraph."""
    block: list[str] = []
    fence = ""
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence:
            block.append(line)
            if match and match[1].startswith(fence):
                yield "\n".join(block), True
                block, fence = [], ""
        elif match:
            if block:
                yield "\n".join(block), False
            block, fence = [line], match[1]
        elif line.strip():
            block.append(line)
        elif block:
            yield "\n".join(block), False
            block = []
    if block:
        yield "\n".join(block), bool(fence)


def promises(section: Section) -> Iterator[str]:
    """The parts not built yet that `section` names without saying they are coming.

    Prose must say so in the same paragraph (or table); a code block, which has no room
    for it, may rely on the prose of its section instead."""
    for text, is_code in paragraphs(section.text):
        if _MARKER.search(text) or (is_code and _MARKER.search(section.text)):
            continue
        for term, pattern in _coming_patterns():
            if pattern.search(text):
                yield term


def test_parts_not_built_yet_are_called_coming() -> None:
    found = sorted(
        f"{section.where}: {term}" for section in sections() for term in promises(section)
    )
    assert not found, (
        "these paragraphs present a part that is not built yet as if it were; say it is "
        "coming (or not built yet) in the same paragraph:\n" + "\n".join(found)
    )


#: Declared ahead of the part that will raise them, so that code can already catch them.
DECLARED_AHEAD: tuple[str, ...] = ()


def test_coming_modules_and_names_do_not_exist_yet() -> None:
    # Once a part lands, its entry must go, and the docs must stop calling it coming.
    built = [
        name
        for name in COMING_NAMES
        if name.startswith("resilient.") and name not in DECLARED_AHEAD and resolves(name)
    ]
    assert built == [], f"these exist now: drop them from COMING_NAMES: {built}"


@pytest.fixture
def a_part_coming(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The checks as they run while a part is not built yet (today every part is)."""
    monkeypatch.setattr(sys.modules[__name__], "COMING_NAMES", ("resilient.interop.teleport",))
    _coming_patterns.cache_clear()
    yield
    _coming_patterns.cache_clear()


@pytest.mark.usefixtures("a_part_coming")
def test_the_checks_see_names_promises_and_markers() -> None:
    text = (
        "Use `resilient.Retry` and `resilient.testing.FakeClock`.\n"
        "```python\nfrom resilient import (\n    Pipeline,  # outermost\n    Timeout as T,\n)\n"
        "from resilient.storage import MemoryStore\n```\n"
        "Spans: `resilient.retry.attempt`. Soon: `resilient.asgi.RateLimitMiddleware`."
    )
    assert documented_names(text) == {
        "resilient.Retry",
        "resilient.testing.FakeClock",
        "resilient.Pipeline",
        "resilient.Timeout",
        "resilient.storage",
        "resilient.storage.MemoryStore",
        "resilient.retry.attempt",
        "resilient.asgi.RateLimitMiddleware",
    }
    assert resolves("resilient.testing.FakeClock")
    assert resolves("resilient._gcra")
    assert not resolves("resilient.Retry.no_such_thing")
    assert not resolves("resilient.no_such_module.Thing")
    assert "resilient.retry.attempt" in emitted_telemetry_names()
    assert "resilient.pipeline" in emitted_telemetry_names()
    assert is_coming("resilient.interop.teleport.beam")
    assert not is_coming("resilient.load_shedder_that_exists")
    said = Section("p", "The `resilient.interop.teleport` beams.\n\nIt is coming.")
    # "coming" must be in its paragraph
    assert list(promises(said)) == ["resilient.interop.teleport"]
    said = Section(
        "p", "The `resilient.interop.teleport` beams are coming:\n| a | b |\n| RedisStore | |"
    )
    assert list(promises(said)) == []
    code = "```python\nfrom resilient.interop.teleport import beam\n\nx = 1\n```"
    assert list(promises(Section("p", code))) == ["resilient.interop.teleport"]
    assert list(promises(Section("p", "Coming soon.\n\n" + code))) == []
    page = "Intro.\n# A\n\n```python\n# not a heading\n```\n\n## B\n\nMore.\n"
    assert [(s.where, s.text.count("heading")) for s in markdown_sections("p.md", page)] == [
        ("p.md", 0),
        ("p.md # A", 1),
        ("p.md ## B", 0),
    ]
