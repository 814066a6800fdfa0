"""Benchmarks: measured against a ceiling or a peer in the same run (DESIGN.md §10). Not tests."""
