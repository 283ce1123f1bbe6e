"""Benchmarks: all-reduce and GPU memory, compared with sourced expectations."""
