"""Fixtures shared by every test folder."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


@pytest.fixture
def no_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``importlib.import_module("uvloop")`` fail, as where it is not installed."""
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> ModuleType:
        if name == "uvloop":
            raise ImportError("no uvloop here")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)
