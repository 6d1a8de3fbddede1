"""Every benchmark of the project: ``python -m benchmarks SUITE [--quick | --full] [--out DIR] [options]``.

Each suite writes ``DIR/results.json`` (every raw figure with the machine, library versions, date and the
command; schema-checked) and ``DIR/report.md`` (its tables, the same text ``render`` prints from the
results file), plus any plots. ``all`` runs every suite into ``DIR/<suite>/`` and writes a combined
``DIR/results.json`` and ``DIR/report.md``; ``all --quick`` takes about three minutes on a 2-core CPU (most of it the
variants suite's short study).
``render RESULTS.json...`` prints the markdown tables of results files, each headed by the command and file it
came from (how the tables of the docs' benchmark pages are made). ``python -m benchmarks SUITE --help`` lists a
suite's own options. Without a size flag each suite runs its default size (``variants``: the study at CPU scale, plan
``cpu``; the others their full size).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch
from tqdm import tqdm

from benchmarks.suites import SUITES, load_suite
from benchmarks.suites.common import (SCHEMA_VERSION, RunContext, UsageError, machine, render_document,
                                      render_tables, resolve_device, validate_results, write_suite)

__all__ = ["main", "build_parser", "render"]


def _common_options(parser: argparse.ArgumentParser) -> None:
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="small sizes (all suites together: about three minutes on 2 cores)")
    size.add_argument("--full", action="store_true",
                      help="largest sizes (variants: the clevr-mirror plan, batch 32, 3000 steps; the other suites "
                           "run this size by default)")
    size.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the test suite's size
    parser.add_argument("--out", default=None, help="output folder (default runs/bench/SUITE)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per trained configuration (suites that train)")
    parser.add_argument("--device", default=None,
                        help="cpu or cuda (default cpu; the gpu suite: cuda when there is one)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default 1: timings of one core are the least noisy); variants "
                             "with --jobs N > 1: the threads of each worker (default cores // N)")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bars")


def build_parser(options_of: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line; ``options_of`` = a suite whose own options are added (that imports the suite)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    sub = parser.add_subparsers(dest="suite", metavar="SUITE", required=True)
    for name, (_, summary) in SUITES.items():
        sp = sub.add_parser(name, help=summary, description=summary,
                            epilog=f"Method: docs/benchmarks/methods.md#{name}")
        _common_options(sp)
        if name == options_of:
            group = sp.add_argument_group(f"{name} options")
            options = {group.add_argument(o.flag, default=None, help=o.help, **o.keywords).dest: o
                       for o in getattr(load_suite(name), "OPTIONS", ())}
            sp.set_defaults(_suite_options=options)
    sp = sub.add_parser("all", help="every suite above, one after the other, into OUT/SUITE/",
                        description="every suite, one after the other, into OUT/SUITE/")
    _common_options(sp)
    sp.add_argument("--skip", nargs="+", default=[], choices=list(SUITES), metavar="SUITE", help="suites left out")
    rp = sub.add_parser("render", help="markdown tables of results.json files, each naming its file and command",
                        description="Print the markdown tables of results files, each headed by the command and "
                                    "the file it came from (as the docs' benchmark pages render them).")
    rp.add_argument("results", nargs="+", help="results.json files written by a suite")
    rp.add_argument("--tables", nargs="+", default=None, help="only these tables (default: those of the report)")
    rp.add_argument("--every", action="store_true", help="also the tables kept out of report.md")
    rp.add_argument("--full-report", action="store_true", help="the whole report.md (machine, notes, plots, tables)")
    return parser


def render(paths: Sequence[Union[str, Path]], tables: Optional[Sequence[str]] = None, every: bool = False,
           full_report: bool = False) -> str:
    """Markdown of the tables of ``paths`` (results.json of one suite, or the combined one of ``all``)."""
    parts = []
    for path in paths:
        try:
            doc = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UsageError(f"cannot read results file {path}: {err}") from err
        docs = list(doc["suites"].values()) if doc.get("suite") == "all" and "suites" in doc else [doc]
        for one in docs:
            try:
                validate_results(one)
            except ValueError as err:
                raise UsageError(f"{path} is not a results file of `python -m benchmarks`: {err}") from err
            parts.append(render_document(one, str(path)) if full_report else
                         render_tables(one, str(path), only=tables, every=every))
    return "\n".join(parts)


def _run_suite(name: str, args: argparse.Namespace, size: Optional[str], out: Path, command: str,
               options: dict) -> dict:
    suite = load_suite(name)
    default_device = getattr(suite, "default_device", lambda: "cpu")()
    device = resolve_device(args.device or default_device)
    ctx = RunContext(size=size or getattr(suite, "DEFAULT_SIZE", "full"), seeds=args.seeds, device=device, out=out,
                     command=command, progress=not args.no_progress, overrides=options,
                     jobs=options.get("jobs") or 1, threads=args.threads)
    ctx.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads or 1)
    info = machine()
    start = time.time()
    with tqdm(total=1, desc=name, disable=args.no_progress, dynamic_ncols=True) as bar:
        result = suite.run(ctx, bar)
    doc = write_suite(result, ctx, time.time() - start, info)
    print(f"{name}: wrote {ctx.out}/results.json, report.md ({doc['wall_s']:.0f} s)", flush=True)
    return doc


def main(argv: Optional[Sequence[str]] = None) -> Any:
    """Run the chosen suite(s) and return the results document (the combined one for ``all``); ``render``
    prints and returns the markdown."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and argv[0] in SUITES else None)
    args = parser.parse_args(argv)
    try:
        if args.suite == "render":
            text = render(args.results, args.tables, args.every, args.full_report)
            print(text)
            return text
        for name in ("seeds", "threads"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name} must be >= 1")
        size = "tiny" if args.tiny else "quick" if args.quick else "full" if args.full else None
        out = Path(args.out or f"runs/bench/{args.suite}")
        command = "python -m benchmarks " + " ".join(shlex.quote(a) for a in argv)
        if args.suite != "all":
            options = {d: getattr(args, d) for d in args._suite_options if getattr(args, d) is not None}
            for dest, option in args._suite_options.items():
                if option.at_least is not None and dest in options and options[dest] < option.at_least:
                    raise UsageError(f"{option.flag} must be >= {option.at_least}")
            return _run_suite(args.suite, args, size, out, command, options)
        names = [n for n in SUITES if n not in args.skip]
        docs, began = {}, time.time()
        for name in names:
            docs[name] = _run_suite(name, args, size, out / name, command, {})
    except UsageError as err:
        parser.exit(2, f"python -m benchmarks {args.suite}: error: {err}\n")
    combined = {"schema": SCHEMA_VERSION, "suite": "all", "command": command, "machine": machine(),
                "wall_s": round(time.time() - began, 2), "suites": docs}
    (out / "results.json").write_text(json.dumps(combined, indent=1))
    reports = [render_document(docs[n], str(out / n / "results.json")).replace("](", f"]({n}/") for n in names]
    (out / "report.md").write_text("\n\n".join(reports))
    print(f"all: wrote {out}/results.json, report.md ({combined['wall_s']:.0f} s)")
    return combined


if __name__ == "__main__":
    main()
