"""The ``deqslots`` command line."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``deqslots``; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="deqslots", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="the main job: a short tour of the fixed-point solvers and backward modes")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .solver_demo import run_solver_demo

        run_solver_demo()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
