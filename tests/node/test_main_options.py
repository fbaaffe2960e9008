"""``python -m crema.node`` options: the event loop choice and GC tuning flags."""

from __future__ import annotations

import asyncio
import gc
import importlib

import pytest

from crema.node import __main__ as node_main
from crema.node import runtime

ARGS = ["--id", "1", "--addr", "127.0.0.1:1", "--peers", "1=127.0.0.1:1", "--data", "d"]


def test_defaults() -> None:
    args = node_main.parse_args(ARGS)
    assert args.event_loop == "auto"
    assert args.gc_gen0 == 0


def test_asyncio_loop_needs_no_factory() -> None:
    assert runtime.loop_factory("asyncio") is None


@pytest.mark.usefixtures("no_uvloop")
def test_auto_falls_back_to_asyncio_without_uvloop() -> None:
    assert runtime.loop_factory("auto") is None
    with pytest.raises(ImportError):
        runtime.loop_factory("uvloop")


def test_auto_uses_uvloop_when_installed() -> None:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        pytest.skip("uvloop is not installed (it is not on Windows)")
    factory = runtime.loop_factory("auto")
    assert factory is uvloop.new_event_loop
    loop = factory()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, result=7)) == 7
    finally:
        loop.close()


def test_gc_gen0_option_raises_gen0_and_freezes() -> None:
    args = node_main.parse_args([*ARGS, "--gc-gen0", "12345"])
    before = gc.get_threshold()
    try:
        node_main.tune_gc_for(args)
        assert gc.get_threshold() == (12_345, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
