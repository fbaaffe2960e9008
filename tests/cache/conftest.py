"""Fixtures shared by the cache tests."""

from __future__ import annotations

import pytest

from crema.cache import store


@pytest.fixture(params=["accelerated", "pure-python"])
def store_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on both store paths: entries from the C helper, and plain tuples."""
    if request.param == "accelerated":
        if not store.accelerated():
            pytest.skip("the store's C helper is not built")
    else:
        monkeypatch.setattr(store, "_accel", None)
        monkeypatch.setattr(store, "_new_entry", store._plain_entry)
    return str(request.param)
