"""Benchmarks: data plus small pure functions; the world versions live in `world`."""
