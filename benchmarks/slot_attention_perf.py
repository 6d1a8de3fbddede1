"""Moved: this benchmark is now ``python -m benchmarks slot-attention``.

Kept so that ``python -m benchmarks.slot_attention_perf ...`` still works:
it prints the new command and runs it with the same arguments.
"""

if __name__ == "__main__":
    from benchmarks.__main__ import forward

    forward("benchmarks.slot_attention_perf", "slot-attention")
