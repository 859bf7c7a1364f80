"""Benchmarks for huizhen (run with ``python -m benchmarks.forwarding``)."""
