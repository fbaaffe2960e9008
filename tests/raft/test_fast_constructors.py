"""The hot-path builders give exactly the values the dataclass constructors give."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crema.raft.messages import Message, MessageType, make_message
from crema.raft.types import ConfState, Entry, EntryType, Index, NodeId, SnapshotMeta, Term
from crema.raft.types import entry_unchecked as unchecked

ids = st.integers(1, 1 << 20).map(NodeId)
indexes = st.integers(0, 1 << 40).map(Index)
terms = st.integers(0, 1 << 40).map(Term)
entries = st.builds(
    Entry,
    st.integers(1, 1 << 40).map(Index),
    terms,
    st.sampled_from(EntryType),
    st.binary(max_size=20),
)
metas = st.none() | st.builds(SnapshotMeta, indexes, terms, st.just(ConfState()))


@given(entries)
def test_entry_unchecked_equals_entry(entry: Entry) -> None:
    built = unchecked(entry.index, entry.term, entry.type, entry.data)
    assert built == entry
    assert hash(built) == hash(entry)
    assert repr(built) == repr(entry)


fields = st.tuples(
    st.sampled_from(MessageType),
    ids,
    ids,
    terms,
    terms,
    indexes,
    st.lists(entries, max_size=3).map(tuple),
    indexes,
    st.booleans(),
    indexes,
    st.binary(max_size=8),
    metas,
)


@given(fields)
def test_make_message_equals_message(values: tuple[object, ...]) -> None:
    expected = Message(*values)  # type: ignore[arg-type]
    built = make_message(*values)  # type: ignore[arg-type]
    assert built == expected
    assert hash(built) == hash(expected)
    assert repr(built) == repr(expected)
