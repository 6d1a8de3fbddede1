"""``python -m benchmarks SUITE [--quick | --full] [--out DIR] [--seeds N] [--device cpu|cuda] [--jobs N]``.

SUITE is ``solvers``, ``backward``, ``variants`` or ``all``. Each suite writes ``DIR/results.json`` (every
raw figure with the machine, torch version and command), ``DIR/report.md`` (tables) and PNG plots; ``all``
runs the three into ``DIR/<suite>/`` and writes a combined ``DIR/results.json`` and ``DIR/report.md``.
``--quick`` takes about two minutes on a 2-core CPU; see BENCHMARKS.md for the full run's duration.
Without a size flag each suite runs its default size: ``variants`` the study at CPU scale (plan ``cpu``),
the others their full size. ``--jobs N`` trains N of the variants suite's runs at a time.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm import tqdm

from benchmarks.solver_perf import machine
from benchmarks.suites import SUITE_MODULES, load_suite
from benchmarks.suites.common import SCHEMA_VERSION, RunContext, resolve_device, write_suite

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=[*SUITE_MODULES, "all"])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small sizes, about 2 minutes for all suites")
    size.add_argument("--full", action="store_true",
                      help="largest sizes (variants: the clevr-mirror plan, batch 32, 3000 steps; the other suites "
                           "run this size by default)")
    size.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test suite's size
    parser.add_argument("--out", default=None, help="output folder (default runs/bench/SUITE)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per trained configuration (variants)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default 1: timings of one core are the least noisy); with "
                             "--jobs N > 1, the threads of each worker (default cores // N)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="variants: training runs at a time, each in its own process (default 1: in this one)")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")
    variants = parser.add_argument_group("variants suite overrides")
    variants.add_argument("--steps", type=int, default=None, help="training steps per run")
    variants.add_argument("--batch-size", type=int, default=None)
    variants.add_argument("--resolution", type=int, default=None)
    variants.add_argument("--segments", type=int, default=None,
                          help="measurement points (spectral radius, validation) per run")
    variants.add_argument("--aux-seeds", type=int, default=None,
                          help="seeds of the ablation and iteration-count groups (default: --seeds)")
    variants.add_argument("--with-slate", action="store_true", help="add SLATE to the main comparison")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the chosen suite(s); returns the results document (the combined one for ``all``)."""
    args = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    for name in ("seeds", "jobs", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"--{name} must be >= 1")
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads or 1)
    size = "tiny" if args.tiny else "quick" if args.quick else "full" if args.full else None
    out = Path(args.out or f"runs/bench/{args.suite}")
    command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in argv)
    overrides = {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch_size),
                                   ("resolution", args.resolution), ("segments", args.segments),
                                   ("aux_seeds", args.aux_seeds), ("with_slate", args.with_slate or None))
                 if v is not None}
    names = list(SUITE_MODULES) if args.suite == "all" else [args.suite]
    docs, reports, began = {}, [], time.time()
    for name in names:
        suite = load_suite(name)
        variants = name == "variants"
        ctx = RunContext(size=size or getattr(suite, "DEFAULT_SIZE", "full"), seeds=args.seeds, device=device,
                         out=out / name if args.suite == "all" else out, command=command,
                         progress=not args.no_progress, overrides=overrides if variants else {},
                         jobs=args.jobs if variants else 1, threads=args.threads)
        ctx.out.mkdir(parents=True, exist_ok=True)
        info = machine()
        start = time.time()
        with tqdm(total=1, desc=name, disable=args.no_progress, dynamic_ncols=True) as bar:
            result = suite.run(ctx, bar)
        docs[name] = write_suite(result, ctx, time.time() - start, info)
        reports.append((ctx.out / "report.md").read_text())
        print(f"{name}: wrote {ctx.out}/results.json, report.md ({docs[name]['wall_s']:.0f} s)", flush=True)
    if args.suite != "all":
        return docs[names[0]]
    combined = {"schema": SCHEMA_VERSION, "suite": "all", "command": command, "machine": machine(),
                "wall_s": round(time.time() - began, 2), "suites": docs}
    (out / "results.json").write_text(json.dumps(combined, indent=1))
    (out / "report.md").write_text("\n\n".join(r.replace("](", f"]({n}/") for n, r in zip(names, reports)))
    print(f"all: wrote {out}/results.json, report.md ({combined['wall_s']:.0f} s)")
    return combined


if __name__ == "__main__":
    main()
