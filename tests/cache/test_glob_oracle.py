"""The state machine's glob matcher agrees with a port of Redis's stringmatchlen."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crema.cache.glob import glob_match
from tests.server.reference_glob import glob_match as reference_match

pattern_bytes = st.sampled_from([b"*", b"?", b"[", b"]", b"^", b"-", b"\\", b"a", b"b", b"\xe9"])
patterns = st.lists(pattern_bytes, max_size=8).map(b"".join)
# Non-empty keys: for the empty key Redis's KEYS takes a shortcut for exactly "*"
# that stringmatchlen itself does not share (tested in test_store / test_commands).
keys = st.lists(st.sampled_from([b"a", b"b", b"-", b"]", b"\xe9", b"*"]), min_size=1, max_size=6)


@settings(max_examples=500, deadline=None)
@given(pattern=patterns, key_parts=keys)
def test_matches_reference(pattern: bytes, key_parts: list[bytes]) -> None:
    key = b"".join(key_parts)
    assert glob_match(pattern, key) == reference_match(pattern, key)
