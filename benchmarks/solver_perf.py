"""Moved: this benchmark is now ``python -m benchmarks solver-perf``; ``python -m benchmarks --help`` lists every one.

Kept so that ``python -m benchmarks.solver_perf ...`` still works:
it prints the new command and runs it with the same arguments.
"""

if __name__ == "__main__":
    from benchmarks.__main__ import forward

    forward("benchmarks.solver_perf", "solver-perf")
