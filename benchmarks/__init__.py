"""Benchmarks (run as modules, e.g. python -m benchmarks.solver_perf)."""
