"""The Redis-protocol server: RESP codec and argument parsing (L0), sockets (L2)."""
