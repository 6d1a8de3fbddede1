"""Suite ``data``: images per second of each procedural generator on one process:
``python -m benchmarks data [--seconds S] [--resolutions R ...] [--datasets NAME ...]``.

Method: docs/benchmarks/methods.md#data
"""

from __future__ import annotations

import time
from types import MappingProxyType

from benchmarks.suites.common import Option, RunContext, SuiteResult, Table, UsageError
from deqslots.data import DATASETS, make_dataset

__all__ = ["measure", "run", "OPTIONS", "TABLES"]

TABLES = MappingProxyType({"generators": ("generator", "resolution", "images_per_s")})


def measure(name: str, resolution: int, seconds: float) -> float:
    """Return the images per second of ``make_dataset(name, resolution=...)[i]`` on this process.

    Args:
        name: Generator name.
        resolution: Image side length.
        seconds: Minimum measuring time (after a short warm-up).

    Returns:
        Throughput in images per second.

    Examples:
        >>> measure("shapes", 32, 0.05) > 0
        True
    """
    data = make_dataset(name, "train", resolution=resolution)
    for i in range(5):
        data[i]
    count, start = 0, time.perf_counter()
    while True:
        for _ in range(20):
            data[count % len(data)]
            count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


OPTIONS = (
    Option("--seconds", "measuring time per cell (default 1; quick 0.3)", type=float),
    Option("--resolutions", "default 32 64 128", type=int, nargs="+"),
    Option("--datasets", "default: all", nargs="+", choices=DATASETS),
)


def run(ctx: RunContext, bar) -> SuiteResult:
    """Every generator at every resolution; ``bar`` advances once per cell."""
    o = ctx.overrides
    tiny = ctx.size == "tiny"
    seconds = o.get("seconds") or {"tiny": 0.02, "quick": 0.3}.get(ctx.size, 1.0)
    if seconds <= 0:
        raise UsageError("--seconds must be > 0")
    resolutions = o.get("resolutions") or ([16] if tiny else [32, 64] if ctx.size == "quick" else [32, 64, 128])
    names = o.get("datasets") or list(DATASETS)
    result = SuiteResult("data", {"seconds": seconds, "resolutions": resolutions})
    tab = result.tables["generators"] = Table(
        f"Images/s of make_dataset(name, resolution=R)[i] (numpy rendering plus the tensor wrap: the path a "
        f"DataLoader worker takes) on one process, for at least {seconds} s per cell after a warm-up.",
        TABLES["generators"])
    bar.reset(total=len(names) * len(resolutions))
    for name in names:
        for res in resolutions:
            bar.set_postfix_str(f"{name} {res}")
            tab.add(generator=name, resolution=res, images_per_s=measure(name, res, seconds))
            bar.update()
    return result
