"""The Raft consensus core: a pure state machine (layer L0).

Nothing in this package touches a socket, a file, a clock, a thread or
asyncio. Randomness comes only from an injected ``random.Random``.
"""
