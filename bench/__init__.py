"""Benchmarks of sd35ui (see bench/README.md); importable so that tests can check their counts."""
