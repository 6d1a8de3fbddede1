"""Benchmarks of the project, one front door: ``python -m benchmarks SUITE`` (``--help`` lists them)."""
