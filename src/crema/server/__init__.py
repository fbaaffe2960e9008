"""The Redis-protocol server: RESP codec and argument parsing (L0), sockets (L2).

- :mod:`crema.server.resp`: request parser and reply encoder (pure).
- :mod:`crema.server.server`: :class:`~crema.server.server.RespServer`.
- :mod:`crema.server.backend`: the ``Backend`` protocol and ``LocalBackend``.
- :mod:`crema.server.commands`: the command table and handlers.
- ``python -m crema.server``: the single-node preview (see ``docs/server.md``).
"""
