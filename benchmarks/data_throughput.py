"""Moved: this benchmark is now ``python -m benchmarks data``; ``python -m benchmarks --help`` lists every one.

Kept so that ``python -m benchmarks.data_throughput ...`` still works:
it prints the new command and runs it with the same arguments.
"""

if __name__ == "__main__":
    from benchmarks.__main__ import forward

    forward("benchmarks.data_throughput", "data")
