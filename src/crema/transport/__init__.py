"""Peer transport: wire codec and handshake (L0) and the TCP transport (L2)."""
