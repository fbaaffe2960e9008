from crema.cache.store import Entry

def entry(value: bytes, expiry: int | None, seq: int, /) -> Entry: ...
def fill(
    entries: list[object],
    shards: list[dict[bytes, Entry]],
    mask: int,
    order: dict[int, bytes],
    heap: list[tuple[int, bytes]],
    seq: int,
    cls: type[tuple[object, ...]],
    /,
) -> tuple[int, int, int, int]: ...
