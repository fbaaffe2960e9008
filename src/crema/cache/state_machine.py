"""The replicated cache state machine that Raft drives (layer L0).

Determinism rules (see ``docs/state-machine.md``):

1. ``apply`` depends only on the current state and the command. Time comes
   only from the command's leader-stamped ``now_ms``; no clock is read.
   The state machine's time is ``clock_ms``, the largest ``now_ms`` applied
   so far, so time never runs backwards even if a new leader's clock is
   behind: once expired, a key stays expired, whether purged yet or not.
2. A key is live while ``clock_ms < expiry_ms``. Commands treat an expired
   key as missing; before each command, at most ``purge_limit`` expired
   entries are removed in ``(expiry_ms, key)`` order, so apply cost stays
   flat. Purge progress is therefore never visible in a result.
3. The capacity bound evicts the least recently *written* entry, after
   purging expired ones. Reads never change state, so replicas whose local
   reads differ still evict alike.
4. Command-level errors (``INCR`` on a non-integer) are returned as
   :class:`~crema.cache.results.CommandFailure`, never raised: they are part
   of the replicated outcome.

Reads take the caller's ``now_ms`` (the node's local clock) and hide entries
expired by it, as Redis replicas do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from crema.cache.codec import decode_command
from crema.cache.commands import (
    INT64_MAX,
    INT64_MIN,
    Append,
    Clear,
    Command,
    Delete,
    Expire,
    ExpireCondition,
    GetDel,
    IncrBy,
    MSet,
    Noop,
    Persist,
    Set,
    SetCondition,
)
from crema.cache.results import (
    NOT_AN_INTEGER,
    OK,
    OVERFLOW,
    TOO_LARGE,
    CommandFailure,
    Result,
    parse_int64,
)
from crema.cache.store import EntriesView, Entry, EntryLike, Store

DEFAULT_PURGE_LIMIT: Final = 20
"""Expired entries purged at most before each applied command."""

MAX_VALUE_BYTES: Final = 512 * 1024 * 1024
"""Largest value ``APPEND`` may build (Redis's ``proto-max-bulk-len``)."""

_FAIL_NOT_INT: Final = CommandFailure(NOT_AN_INTEGER)
_FAIL_OVERFLOW: Final = CommandFailure(OVERFLOW)
_FAIL_TOO_LARGE: Final = CommandFailure(TOO_LARGE)

# Enum member lookups cost as much as a dict write here: bind them once.
_ALWAYS: Final = SetCondition.ALWAYS
_NX: Final = SetCondition.NX
_EXPIRE_NX: Final = int(ExpireCondition.NX)
_EXPIRE_XX: Final = int(ExpireCondition.XX)
_EXPIRE_GT: Final = int(ExpireCondition.GT)
_EXPIRE_LT: Final = int(ExpireCondition.LT)


def _check_position(index: int, term: int, clock_ms: int) -> None:
    if index < 0 or term < 0 or clock_ms < 0:
        raise ValueError(f"index, term and clock must be >= 0, got {(index, term, clock_ms)}")


class CacheStateMachine:
    """Applies committed commands to the key space; serves local reads.

    Args:
        capacity: maximum number of stored entries (None: unbounded).
        purge_limit: expired entries removed at most before each command.
    """

    def __init__(self, capacity: int | None = None, purge_limit: int = DEFAULT_PURGE_LIMIT) -> None:
        if purge_limit < 0:
            raise ValueError(f"purge_limit must be >= 0, got {purge_limit}")
        self._store = Store(capacity)
        self._purge_limit = purge_limit
        self._applied_index = 0
        self._applied_term = 0
        self._handlers: dict[type[Any], Callable[[Any], Result]] = {
            Set: self._set,
            Delete: self._delete,
            Clear: self._clear,
            Expire: self._expire,
            Persist: self._persist,
            IncrBy: self._incr_by,
            Append: self._append,
            GetDel: self._get_del,
            MSet: self._mset,
            Noop: lambda c: None,
        }
        self._clock = 0  # the largest now_ms applied: time never runs backwards

    # ------------------------------------------------------------ progress

    @property
    def applied_index(self) -> int:
        """Index of the last applied log entry (0 before any)."""
        return self._applied_index

    @property
    def applied_term(self) -> int:
        """Term of the last applied log entry (0 before any)."""
        return self._applied_term

    @property
    def clock_ms(self) -> int:
        """The state machine's time: the largest ``now_ms`` applied (0 before any).

        A leader should stamp new commands with at least this value (and at
        least its last proposed stamp), so stamps in the log never decrease;
        then a replica restored from a snapshot, whose clock starts from the
        snapshot's, computes exactly what the others do.
        """
        return self._clock

    @property
    def capacity(self) -> int | None:
        """The entry bound, or None."""
        return self._store.capacity

    def _advance(self, index: int, term: int) -> None:
        if index <= self._applied_index or term < self._applied_term:
            raise ValueError(
                f"apply out of order: ({index}, {term}) after "
                f"({self._applied_index}, {self._applied_term})"
            )
        self._applied_index = index
        self._applied_term = term

    def mark_applied(self, index: int, term: int) -> None:
        """Record a log entry with no command (leader no-op, config change).

        Raises:
            ValueError: ``index`` is not after the applied index, or ``term``
                goes back.
        """
        self._advance(index, term)

    def set_applied(self, index: int, term: int, clock_ms: int = 0) -> None:
        """Set the applied position unconditionally (after a snapshot restore).

        Args:
            index: index of the snapshot's last entry.
            term: term of that entry.
            clock_ms: the state machine time to resume from (the view's
                ``clock_ms`` when known, else 0: the next command's stamp).
        """
        _check_position(index, term, clock_ms)
        self._applied_index = index
        self._applied_term = term
        self._clock = clock_ms

    # --------------------------------------------------------------- apply

    def apply(self, index: int, term: int, command: Command) -> Result:
        """Apply the committed ``command`` at log position (``index``, ``term``).

        Returns:
            The command's result (see each command class and
            :mod:`crema.cache.results`).

        Raises:
            ValueError: entries applied out of order (a caller bug).
            KeyError: ``command`` is not one of the command classes.
        """
        if type(command) is Set:  # the hot path: what the lines below do, inline
            c = command
            if index <= self._applied_index or term < self._applied_term:
                self._advance(index, term)  # raises
            self._applied_index = index
            self._applied_term = term
            clock = self._clock
            if c.now_ms > clock:
                clock = self._clock = c.now_ms
            if self._purge_limit:
                self._store.purge_expired(clock, self._purge_limit)
            if c.condition is _ALWAYS and not c.get and not c.keep_ttl:
                expiry = c.expiry_ms  # a plain SET, as _set and _put do it
                if expiry is not None and expiry <= clock:
                    self._store.delete(c.key)
                else:
                    self._store.write(c.key, c.value, expiry, clock)
                return OK
            return self._set(c)
        handler = self._handlers[type(command)]
        self._advance(index, term)
        self._clock = max(self._clock, command.now_ms)
        if self._purge_limit:
            self._store.purge_expired(self._clock, self._purge_limit)
        return handler(command)

    def apply_encoded(self, index: int, term: int, data: bytes) -> Result:
        """Decode and apply the data of a normal log entry (empty: no-op).

        Raises:
            CommandDecodeError: ``data`` is not a valid command. The entry is
                not marked applied; every replica fails on it alike.
            ValueError: entries applied out of order.
        """
        if not data:
            self.mark_applied(index, term)
            return None
        return self.apply(index, term, decode_command(data))

    def _put(self, key: bytes, value: bytes, expiry_ms: int | None) -> None:
        if expiry_ms is not None and expiry_ms <= self._clock:
            self._store.delete(key)
        else:
            self._store.write(key, value, expiry_ms, self._clock)

    def _set(self, c: Set) -> Result:
        if c.condition is _ALWAYS and not c.get and not c.keep_ttl:
            # A plain SET: nothing depends on the old entry, skip looking it up.
            self._put(c.key, c.value, c.expiry_ms)
            return OK
        entry = self._store.live(c.key, self._clock)
        old = None if entry is None else entry[0]
        cond = c.condition
        if cond is not _ALWAYS and ((cond is _NX) == (entry is not None)):
            return old if c.get else None
        expiry = c.expiry_ms
        if c.keep_ttl and entry is not None:
            expiry = entry[1]
        self._put(c.key, c.value, expiry)
        return old if c.get else OK

    def _delete(self, c: Delete) -> Result:
        count = 0
        for key in c.keys:
            if self._store.live(key, self._clock) is not None:
                count += 1
            self._store.delete(key)
        return count

    def _clear(self, c: Clear) -> Result:
        self._store.clear()
        return OK

    def _expire(self, c: Expire) -> Result:
        entry = self._store.live(c.key, self._clock)
        if entry is None:
            return 0
        current, new = entry[1], c.expiry_ms
        flags = int(c.condition)  # checked in the order Redis checks them
        if flags and (
            (flags & _EXPIRE_NX and current is not None)
            or (flags & _EXPIRE_XX and current is None)
            or (flags & _EXPIRE_GT and (current is None or new <= current))
            or (flags & _EXPIRE_LT and current is not None and new >= current)
        ):
            return 0
        self._put(c.key, entry[0], new)
        return 1

    def _persist(self, c: Persist) -> Result:
        entry = self._store.live(c.key, self._clock)
        if entry is None or entry[1] is None:
            return 0
        self._put(c.key, entry[0], None)
        return 1

    def _incr_by(self, c: IncrBy) -> Result:
        entry = self._store.live(c.key, self._clock)
        if entry is None:
            current, expiry = 0, None
        else:
            parsed = parse_int64(entry[0])
            if parsed is None:
                return _FAIL_NOT_INT
            current, expiry = parsed, entry[1]
        result = current + c.delta
        if not INT64_MIN <= result <= INT64_MAX:
            return _FAIL_OVERFLOW
        self._put(c.key, str(result).encode(), expiry)
        return result

    def _append(self, c: Append) -> Result:
        entry = self._store.live(c.key, self._clock)
        if entry is None:
            value, expiry = c.value, None
        else:
            if len(entry[0]) + len(c.value) > MAX_VALUE_BYTES:
                return _FAIL_TOO_LARGE
            value, expiry = entry[0] + c.value, entry[1]
        self._put(c.key, value, expiry)
        return len(value)

    def _get_del(self, c: GetDel) -> Result:
        entry = self._store.live(c.key, self._clock)
        self._store.delete(c.key)
        return None if entry is None else entry[0]

    def _mset(self, c: MSet) -> Result:
        for key, value in c.pairs:
            self._put(key, value, None)
        return OK

    # --------------------------------------------------------------- reads

    def get(self, key: bytes, now_ms: int) -> bytes | None:
        """The value of ``key``, or None if missing or expired at ``now_ms``."""
        entry = self._store.live(key, now_ms)
        return None if entry is None else entry[0]

    def contains(self, key: bytes, now_ms: int) -> bool:
        """Whether ``key`` is live at ``now_ms``."""
        return self._store.live(key, now_ms) is not None

    def ttl_ms(self, key: bytes, now_ms: int) -> int:
        """Redis ``PTTL``: ms left (>= 1), -1 without expiry, -2 if missing."""
        entry = self._store.live(key, now_ms)
        if entry is None:
            return -2
        return -1 if entry[1] is None else entry[1] - now_ms

    def expire_time_ms(self, key: bytes, now_ms: int) -> int:
        """Redis ``PEXPIRETIME``: absolute expiry, -1 without one, -2 if missing."""
        entry = self._store.live(key, now_ms)
        if entry is None:
            return -2
        return -1 if entry[1] is None else entry[1]

    def strlen(self, key: bytes, now_ms: int) -> int:
        """Redis ``STRLEN``: length of the value, 0 if missing."""
        entry = self._store.live(key, now_ms)
        return 0 if entry is None else len(entry[0])

    def type(self, key: bytes, now_ms: int) -> str:
        """Redis ``TYPE``: ``"string"`` for a live key, else ``"none"``."""
        return "none" if self._store.live(key, now_ms) is None else "string"

    def __len__(self) -> int:
        """Stored entries, including expired ones not yet purged (``DBSIZE``)."""
        return len(self._store)

    @property
    def expires_count(self) -> int:
        """Stored entries with an expiry, expired-but-unpurged included (O(1))."""
        return self._store.ttl_count

    @property
    def nbytes(self) -> int:
        """Bytes of keys plus values stored, expired-but-unpurged included (O(1))."""
        return self._store.nbytes

    def count_live(self, now_ms: int) -> int:
        """Entries live at ``now_ms`` (walks the whole store: O(n))."""
        return len(self._store.keys(now_ms))

    def keys(self, pattern: bytes, now_ms: int) -> list[bytes]:
        """Redis ``KEYS``: live keys matching the glob ``pattern``, in write order."""
        return self._store.keys(now_ms, pattern)

    def scan(
        self, cursor: int, now_ms: int, match: bytes | None = None, count: int = 10
    ) -> tuple[int, list[bytes]]:
        """Redis ``SCAN cursor [MATCH pattern] [COUNT count]``.

        Start with cursor 0; the iteration is over when the returned cursor
        is 0. A key live for the whole iteration is returned at least once;
        keys may repeat; a step may return no keys with a non-zero cursor.
        ``count`` is the amount of work (entries examined) per step; ``match``
        filters afterwards, as in Redis.

        Returns:
            ``(next_cursor, keys)``.
        """
        return self._store.scan(cursor, now_ms, match, count)

    def check_invariants(self) -> None:
        """Verify the store's internal tables agree (for tests; O(n))."""
        self._store.check_invariants()

    def live_shards(self) -> list[dict[bytes, Entry]]:
        """The store's current shard dicts ``key -> (value, expiry_ms | None, seq)``.

        For readers on the serving path (the C GET-run helper): read only, use
        at once (a ``clear`` replaces the list, and a view may copy a shard).
        Expired entries are included; the caller hides them by its clock.
        """
        return self._store._shards

    # ----------------------------------------------------- snapshot support

    def entries_view(self) -> EntriesView:
        """A consistent, immutable view of all entries at the applied index.

        Cheap (two shallow table copies); stays valid while apply continues.
        Iterating it yields ``(key, value, expiry_ms | None)`` in write order,
        expired-but-unpurged entries included, so replicas at the same index
        produce byte-identical snapshot bodies. ``view.index`` and
        ``view.term`` give the position it was taken at, ``view.clock_ms``
        the state machine time then.
        """
        return self._store.view(self._applied_index, self._applied_term, self._clock)

    def restore_entries(self, entries: Iterable[EntryLike]) -> None:
        """Replace the whole contents with ``entries`` (``RestoreTarget``).

        A new store is built and swapped in only once the iterable is
        exhausted without error; otherwise the old contents stay untouched.
        Entries keep their order and absolute expiry. The applied position
        is unchanged: call :meth:`set_applied` with the snapshot's metadata,
        or use :meth:`restore`.

        Raises:
            SnapshotError: an entry is malformed or repeats a key.
            Exception: whatever the iterable raises, unchanged.
        """
        self._store = Store.from_entries(entries, self._store.capacity)

    def restore(
        self, entries: Iterable[EntryLike], index: int, term: int, clock_ms: int = 0
    ) -> None:
        """Restore ``entries`` and set the applied position, all or nothing."""
        _check_position(index, term, clock_ms)
        self.restore_entries(entries)
        self.set_applied(index, term, clock_ms)
