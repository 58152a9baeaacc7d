"""Microbenchmarks (pytest-benchmark); not part of the default test run: see bench_attention.py."""
