"""The C accelerator is built where a compiler exists, and agrees with pure Python."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crema.checkpoint import SnapshotEntry
from crema.checkpoint import format as fmt

REAL_ACCELERATOR = fmt._accel  # captured at import, before any test switches paths


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI guarantees a C compiler")
def test_accelerator_is_built_in_ci() -> None:
    assert REAL_ACCELERATOR is not None, "make test should have built crema.checkpoint._mcrs"


entry = st.tuples(st.binary(max_size=40), st.binary(max_size=80), st.integers(0, 2**64 - 1))


@settings(max_examples=200, deadline=None)
@given(
    entries=st.lists(entry, max_size=20), cut=st.integers(0, 2000), live_after=st.integers(-1, 50)
)
def test_accelerated_decode_matches_python(
    entries: list[tuple[bytes, bytes, int]], cut: int, live_after: int
) -> None:
    if REAL_ACCELERATOR is None:
        pytest.skip("accelerator not built")
    body = fmt.COUNT.pack(len(entries)) + b"".join(fmt.encode_entry(k, v, e) for k, v, e in entries)
    split = min(cut, len(body))
    results = []
    for accelerator in (REAL_ACCELERATOR, None):
        saved, fmt._accel = fmt._accel, accelerator
        try:
            decoder = fmt.BodyDecoder(len(body))
            got = decoder.feed(body[:split], live_after_ms=live_after)
            got += decoder.feed(body[split:], live_after_ms=live_after)
            decoder.finish()
        finally:
            fmt._accel = saved
        results.append(got)
    assert results[0] == results[1]
    assert all(type(e) is SnapshotEntry for e in results[0])


def test_encode_batch_declines_unusual_items(codec_path: str) -> None:
    if codec_path != "accelerated":
        pytest.skip("accelerator not in use on this path")
    assert fmt.encode_batch([(b"k", b"v", None)]) == fmt.encode_entry(b"k", b"v", 0)
    assert fmt.encode_batch([SnapshotEntry(b"k", b"v", 5)]) == fmt.encode_entry(b"k", b"v", 5)
    for item in [("k", b"v", None), (b"k", b"v", -1), (b"k", b"v", True), (b"k", b"v", 2**64)]:
        assert fmt.encode_batch([item]) is None
