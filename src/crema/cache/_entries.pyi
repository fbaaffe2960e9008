from crema.cache.store import Entry

def entry(value: bytes, expiry: int | None, seq: int, /) -> Entry: ...
def fill(
    entries: list[object],
    shards: list[dict[bytes, Entry]],
    mask: int,
    blocks: dict[int, dict[int, bytes]],
    bits: int,
    heap: list[tuple[int, bytes]],
    seq: int,
    cls: type[tuple[object, ...]],
    /,
) -> tuple[int, int, int, int]: ...
def untrack_list(items: list[tuple[int, bytes]], /) -> None: ...
