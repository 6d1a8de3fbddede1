"""Moved: this benchmark is now ``python -m benchmarks readers``; ``python -m benchmarks --help`` lists every one.

Kept so that ``python -m benchmarks.reader_throughput ...`` still works:
it prints the new command and runs it with the same arguments.
"""

if __name__ == "__main__":
    from benchmarks.__main__ import forward

    forward("benchmarks.reader_throughput", "readers")
