"""Images per second of each procedural generator on one process, printed as a markdown table.

Each cell renders items through the dataset's ``__getitem__`` (numpy rendering plus the tensor
wrap), the path a ``DataLoader`` worker takes, for at least ``--seconds`` of wall-clock time.

Examples:
    python -m benchmarks.data_throughput
    python -m benchmarks.data_throughput --seconds 0.5 --resolutions 64
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from deqslots.data import DATASETS, make_dataset

__all__ = ["measure", "main"]


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


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run the measurements and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per cell")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    header = "| generator | " + " | ".join(f"{r}x{r} img/s" for r in args.resolutions) + " |"
    print(header)
    print("|" + "---|" * (len(args.resolutions) + 1))
    for name in args.datasets:
        cells = [f"{measure(name, r, args.seconds):,.0f}" for r in args.resolutions]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
