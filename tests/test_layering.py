"""Imports run one way: policies, then stores, then pure math. Checked on the source, so a
function-level import that dodges a cycle counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "resilient"

#: What each layer may import from resilient itself.
LAYERS: dict[str, set[str]] = {
    # Pure math: nothing but other pure helpers.
    "_gcra.py": set(),
    # Stores: pure math and the private helpers below the policies, never a policy. A shared
    # store also raises StorageUnavailableError and reports its backend's health through
    # the telemetry seam.
    "storage": {
        "resilient._gcra",
        "resilient._clock",
        "resilient._backend",
        "resilient._validate",
        "resilient.exceptions",
        "resilient.telemetry._core",
        "resilient.telemetry._spec",
        "resilient.storage",
    },
    # A store over another library: the same as the stores.
    "interop/limits.py": {"resilient._gcra", "resilient._clock", "resilient._validate"},
    # Adapters over a policy: the policy they plug into and the helpers below it.
    "interop/tenacity.py": {"resilient._validate", "resilient.retry._backoff"},
    "interop/pybreaker.py": {
        "resilient._policy",
        "resilient._task_local",
        "resilient._validate",
        "resilient.circuit_breaker._breaker",
        "resilient.exceptions",
        "resilient.telemetry._core",
    },
}


def resilient_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] == "resilient")
    return found


def files_of(layer: str) -> list[Path]:
    target = SRC / layer
    return sorted(target.rglob("*.py")) if target.is_dir() else [target]


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_a_lower_layer_never_imports_a_higher_one(layer: str) -> None:
    allowed = LAYERS[layer]
    for path in files_of(layer):
        imported = resilient_imports(path)
        stray = {
            name
            for name in imported
            if not any(name == ok or name.startswith(ok + ".") for ok in allowed)
        }
        assert not stray, f"{path.relative_to(SRC)} imports {sorted(stray)}"


def test_only_the_opentelemetry_consumer_imports_opentelemetry() -> None:
    importers = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if any(
            name.split(".")[0] == "opentelemetry"
            for node in ast.walk(ast.parse(path.read_text()))
            for name in (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
        )
    )
    assert importers == ["telemetry/_otel.py"]
