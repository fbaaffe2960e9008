"""Benchmarks: programs that print figures and compare against a peer."""
