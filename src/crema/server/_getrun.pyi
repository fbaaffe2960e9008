from crema.cache.store import Entry

def get_run(
    data: bytes | bytearray | memoryview,
    offset: int,
    shards: list[dict[bytes, Entry]],
    now_ms: int,
    protocol: int,
    max_key: int,
    max_count: int,
    max_reply: int,
    /,
) -> tuple[int, bytes, int, int]: ...
def set_request(
    data: bytes | bytearray | memoryview, max_bulk: int, /
) -> tuple[bytes, bytes] | None: ...
