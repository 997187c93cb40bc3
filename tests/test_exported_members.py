"""The public surface: `__all__` is complete, sorted, and reports public module paths."""

from __future__ import annotations

import importlib

import pytest

import resilient


def test_all_is_sorted_and_has_no_duplicates() -> None:
    assert list(resilient.__all__) == sorted(set(resilient.__all__))


def test_all_names_every_public_member() -> None:
    public = {
        name
        for name, value in vars(resilient).items()
        if not name.startswith("_") and not isinstance(value, type(resilient))
    }
    assert public == set(resilient.__all__) - {"__version__"}


@pytest.mark.parametrize("name", [n for n in resilient.__all__ if n != "__version__"])
def test_public_classes_report_the_public_module(name: str) -> None:
    value = getattr(resilient, name)
    if isinstance(value, type):
        assert value.__module__ == "resilient"


@pytest.mark.parametrize(
    "module",
    [
        "resilient.asgi",
        "resilient.health",
        "resilient.hedge",
        "resilient.httpx",
        "resilient.interop.limits",
        "resilient.interop.pybreaker",
        "resilient.interop.tenacity",
        "resilient.load_shedding",
        "resilient.storage",
        "resilient.telemetry",
        "resilient.testing",
    ],
)
def test_subpackages_declare_their_exports(module: str) -> None:
    mod = importlib.import_module(module)
    assert list(mod.__all__) == sorted(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name)


def test_httpx_names_report_their_public_module() -> None:
    import resilient.httpx

    assert resilient.httpx.ResilientTransport.__module__ == "resilient.httpx"
    assert resilient.httpx.may_resend.__module__ == "resilient.httpx"
