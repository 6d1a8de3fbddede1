"""What every suite shares: the run context, the results document, timing, formatting, writing the outputs.

A suite returns a :class:`SuiteResult`: named tables (declared columns, one dict per row), notes and plots.
:func:`write_suite` turns it into ``DIR/results.json`` (every raw figure, the machine, versions, date and
command) and ``DIR/report.md`` (:func:`render_document` of that very file, so the report and
``python -m benchmarks render`` print the same tables). The schema is fixed by :data:`SCHEMA_VERSION` and
checked by :func:`validate_results`, which the runner and the tests call. What more than one suite needs lives
here too, since no suite imports another: interleaved timing, summaries over seeds, training-run drivers,
worker pools, option parsing and plotting.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import functools
import json
import math
import multiprocessing
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch

import solvers

__all__ = ["SCHEMA_VERSION", "RunContext", "Table", "SuiteResult", "resolve_device", "sync", "time_call", "median_ms",
           "write_suite", "validate_results", "render_tables", "render_document", "fmt", "table", "machine", "Counter",
           "TimedMap", "count_vjps", "saved_bytes", "rows_table", "load_average", "Budget", "UsageError", "Option",
           "source_line", "step_rates", "end_with_parent", "f_only", "interleaved", "interleaved_ms", "by_size",
           "tail_mean", "mean_sd", "seed_list", "autoencoder", "train_run", "read_metrics", "InlineExecutor",
           "init_worker", "worker_pool", "pyplot", "save_figure", "band", "FORWARD_SOLVERS", "our_solver",
           "torchdeq_solver"]

SCHEMA_VERSION = 1
TOP_KEYS = ("schema", "suite", "command", "machine", "settings", "wall_s", "tables", "plots", "notes")
# what a reader needs to judge a figure: the hardware, the library versions and when it was measured
MACHINE_KEYS = ("cpu", "cores", "threads", "python", "torch", "numpy", "date", "device")


class UsageError(ValueError):
    """Bad command-line input to a suite; the runner prints it (no traceback) and exits with status 2."""


class Option:
    """One of a suite's own command-line options, declared as data in the suite's ``OPTIONS``.

    ``python -m benchmarks SUITE --help`` lists it; its value (None when not given) reaches the suite in
    ``ctx.overrides``.

    Args:
        flag: ``--name``, or the name of a positional argument.
        help: the help text.
        at_least: the smallest value accepted: the runner refuses a smaller one before the suite starts.
        **keywords: other keywords of ``argparse.ArgumentParser.add_argument`` (type, nargs, choices, ...).
    """

    def __init__(self, flag: str, help: Optional[str], at_least: Optional[float] = None, **keywords: Any) -> None:
        self.flag = flag
        self.help = help
        self.at_least = at_least
        self.keywords = keywords


@dataclass(frozen=True)
class RunContext:
    """Settings shared by all suites of one invocation.

    Attributes:
        size: ``tiny`` (the test suite's), ``quick`` (~3 minutes for all suites), ``cpu`` (the variants study at
            CPU scale, that suite's default) or ``full`` (the largest, every other suite's default); a suite knows
            the sizes it defines.
        seeds: seeds per configuration where a suite trains (None = the suite's default for ``size``).
        device: where problems and models live.
        out: folder of this suite's outputs.
        command: the command line that reproduces the run.
        progress: show tqdm bars.
        overrides: suite-specific settings from the command line (e.g. variants' ``steps``).
        jobs: independent runs a suite may execute at once in worker processes (variants).
        threads: torch threads of each worker when ``jobs`` > 1 (None = cores // jobs).
    """

    size: str
    seeds: Optional[int]
    device: torch.device
    out: Path
    command: str
    progress: bool = True
    overrides: dict = field(default_factory=dict)
    jobs: int = 1
    threads: Optional[int] = None


@dataclass
class Table:
    """A results table: declared columns and rows holding every one of them.

    Attributes:
        description: what the rows are and how they were measured (printed above the table).
        columns: the declared columns, in order.
        rows: one dict per row, keys = ``columns``.
        views: ``(title, columns)`` pairs: the report prints one markdown table per view (a wide table split
            in two); empty = one table of every column.
        in_report: False keeps the table in results.json only (e.g. thousands of per-step rows).
    """

    description: str
    columns: tuple[str, ...]
    rows: list[dict] = field(default_factory=list)
    views: tuple[tuple[str, tuple[str, ...]], ...] = ()
    in_report: bool = True

    def add(self, **row: Any) -> dict:
        """Append a row; a missing or unknown column is a bug in the suite, so it raises."""
        missing, extra = set(self.columns) - set(row), set(row) - set(self.columns)
        if missing or extra:
            raise KeyError(f"row columns differ from the table's: missing {sorted(missing)}, extra {sorted(extra)}")
        self.rows.append({c: row[c] for c in self.columns})
        return self.rows[-1]


def rows_table(description: str, rows: Sequence[dict], **kwargs: Any) -> Table:
    """A :class:`Table` of row dicts whose columns are the union of their keys (first seen first; a row
    lacking a column gets None there), for measurements that build their rows as dicts."""
    columns = tuple(dict.fromkeys(k for r in rows for k in r))
    tab = Table(description, columns, **kwargs)
    for r in rows:
        tab.add(**{c: r.get(c) for c in columns})
    return tab


@dataclass
class SuiteResult:
    """What a suite hands back: tables by name, plots (file names in the out folder), notes, settings."""

    suite: str
    settings: dict
    tables: dict[str, Table] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda"``; asking for CUDA without one is an error that says so."""
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda; got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch.cuda.is_available() is False on this machine "
                           f"(torch {torch.__version__}); run with --device cpu")
    return torch.device(name)


def sync(device: Optional[torch.device]) -> None:
    """Wait for queued kernels, so a wall-clock interval covers the work (a no-op on CPU and for None)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: Optional[torch.device] = None) -> tuple[float, Any]:
    """Seconds one call of ``fn`` takes, synchronised on ``device``, and its result."""
    cuda = device is not None and device.type == "cuda"  # decided outside the timed interval
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def f_only(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` evaluations of ``f`` from ``z0`` outside autograd: the floor of any solver making ``n``."""
    with torch.no_grad():
        z = z0
        for _ in range(n):
            z = f(z)
    return z


class Budget:
    """A wall-clock allowance: ``left()`` seconds remain; ``over()`` once it is spent.

    Args:
        seconds: the allowance, counted from construction.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def over(self) -> bool:
        return self.left() <= 0


def interleaved(cases: Mapping[str, Callable[[], Any]], repeats: int, device: Optional[torch.device] = None,
                warmup: int = 0, rotate: bool = False, budget: Optional[Budget] = None) -> dict[str, list[float]]:
    """Seconds of every timed call of each case, the cases taking turns so that load from other processes and
    drift hit all alike.

    Args:
        cases: name -> the call to time.
        repeats: rounds of one call of every case.
        device: synchronised around each call (None: the CPU, nothing to wait for).
        warmup: untimed rounds of one call of every case first (True: one).
        rotate: the next case goes first in each round (default: the order flips every round).
        budget: stop after the round in which it ran out (at least one timed round).
    """
    names = list(cases)
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        shift = r % len(names)
        order = names[shift:] + names[:shift] if rotate else names if r % 2 == 0 else names[::-1]
        for name in order:
            times[name].append(time_call(cases[name], device)[0])
        if budget is not None and budget.over():
            break
    return times


def median_ms(times: Sequence[float]) -> float:
    """Median of seconds, in milliseconds (NaN for no times)."""
    return 1e3 * statistics.median(times) if times else float("nan")


def interleaved_ms(cases: Mapping[str, Callable[[], Any]], repeats: int, **options: Any) -> dict[str, float]:
    """Median milliseconds of each case over :func:`interleaved` rounds (``options`` as there)."""
    return {name: median_ms(times) for name, times in interleaved(cases, repeats, **options).items()}


def tail_mean(values: Sequence[float], fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of ``values`` (at least one; NaN for none): where a training run ended."""
    if not values:
        return math.nan
    tail = values[-max(1, int(len(values) * fraction)):]
    return sum(tail) / len(tail)


def mean_sd(values: Iterable[Optional[float]]) -> str:
    """``mean ± sd`` of the finite values over seeds (the value alone when there is one; ``n/a`` for none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:.4g}"
    return f"{statistics.mean(finite):.4g} ± {statistics.stdev(finite):.2g}"


def step_rates(runs: dict[str, tuple[torch.nn.Module, torch.optim.Optimizer]],
               loss_fn: Callable[[torch.nn.Module], torch.Tensor], rounds: int, device: torch.device,
               budget: Optional[Budget] = None, counts: Optional[dict[str, int]] = None, warmup: int = 1,
               before_step: Optional[Callable[[torch.nn.Module], Any]] = None) -> dict[str, float]:
    """Median training steps/s of each named (model, optimiser), timed in :func:`interleaved` rounds.

    One step (``loss_fn(model)``, backward, ``before_step(model)`` if given, e.g. clipping, optimiser step) of
    every run per round; the first ``warmup`` rounds are not timed. ``budget`` stops after the round in which it
    ran out (at least one timed round); ``counts`` receives the number of timed steps of each run.
    """
    def step(name: str) -> None:
        model, opt = runs[name]
        loss = loss_fn(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if before_step is not None:
            before_step(model)
        opt.step()

    times = interleaved({name: functools.partial(step, name) for name in runs}, rounds, device, warmup, budget=budget)
    if counts is not None:
        counts.update({name: len(t) for name, t in times.items()})
    return {name: 1.0 / statistics.median(t) for name, t in times.items()}


def load_average() -> Optional[float]:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


class Counter:
    """Wrap a map and count its calls (the same wrapper is used for every library)."""

    def __init__(self, f: Callable) -> None:
        self.f = f
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.f(*args, **kwargs)


class TimedMap:
    """Wrap a map and add up the wall time spent inside it."""

    def __init__(self, f: Callable) -> None:
        self.f = f
        self.total = 0.0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.f(z)
        self.total += time.perf_counter() - start
        return out


@contextlib.contextmanager
def count_vjps() -> Iterator[dict]:
    """Count calls of torch.autograd.grad (the adjoint solvers compute J^T v with it)."""
    original = torch.autograd.grad
    box = {"calls": 0}

    def counted(*args: Any, **kwargs: Any) -> Any:
        box["calls"] += 1
        return original(*args, **kwargs)

    torch.autograd.grad = counted
    try:
        yield box
    finally:
        torch.autograd.grad = original


def saved_bytes(fn: Callable[[], torch.Tensor], exclude: tuple[torch.Tensor, ...] = (), distinct: bool = True
                ) -> tuple[int, int]:
    """Bytes autograd saves while ``fn`` builds its graph, and the number of tensors it saves.

    With ``distinct`` each storage counts once at its full size and the storages of ``exclude`` (the parameters
    and inputs, which exist whatever the backward mode) are left out, so the number is the memory the backward
    mode itself keeps alive; without, every saved tensor's own bytes add up, as often as it is saved.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}
    packed = {"count": 0, "bytes": 0}

    def pack(t: torch.Tensor) -> torch.Tensor:
        packed["count"] += 1
        packed["bytes"] += t.numel() * t.element_size()
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            storages[ptr] = max(storages.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.sum().backward()  # the graph must be usable
    return (sum(storages.values()) if distinct else packed["bytes"]), packed["count"]


# our forward solvers by the family names the tables use
FORWARD_SOLVERS = MappingProxyType({"iterate": solvers.Iterate, "anderson": solvers.Anderson,
                                    "broyden": solvers.Broyden})


def our_solver(solver: solvers.ForwardSolver, backward: str, **options: Any) -> Callable[..., torch.Tensor]:
    """:func:`solvers.fixed_point` with forward ``solver`` (and ``options``), as ``solve(f, z0, tol, max_iter,
    stop_mode="abs") -> z`` outside autograd: the interface of :func:`torchdeq_solver`."""
    def solve(f: Callable, z0: torch.Tensor, tol: float, max_iter: int, stop_mode: str = "abs") -> torch.Tensor:
        with torch.no_grad():
            return solvers.fixed_point(f, z0, forward=solver, backward=backward, tol=tol, max_iter=max_iter,
                                       stop_mode=stop_mode, on_fail="ignore", **options)[0]
    return solve


def torchdeq_solver(name: str) -> Optional[Callable[..., torch.Tensor]]:
    """torchdeq 0.1.0's forward solver ``name`` (``fixed_point_iter``, ``anderson_solver``, ``broyden_solver``)
    with its defaults, as ``solve(f, z0, tol, max_iter, stop_mode="abs") -> z`` outside autograd; None when
    torchdeq is not installed (the suites report a missing peer rather than fail)."""
    try:
        from torchdeq import solver as library
    except Exception:  # pragma: no cover
        return None
    fn = getattr(library, name)

    def solve(f: Callable, z0: torch.Tensor, tol: float, max_iter: int, stop_mode: str = "abs") -> torch.Tensor:
        with torch.no_grad():
            return fn(f, z0, max_iter=max_iter, tol=tol, stop_mode=stop_mode)[0]
    return solve


def fmt(x: Any, digits: int = 3) -> str:
    """A table cell: yes/no, integers as they are, floats to ``digits`` significant digits, None/NaN as '-'."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if x is None or (isinstance(x, float) and math.isnan(x)) or x == "nan":
        return "-"
    if isinstance(x, float):
        if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e6):
            return f"{x:.2e}"
        if abs(x) >= 100:
            return f"{x:.0f}"
        return f"{x:.{digits}g}"
    if isinstance(x, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in x)
    return str(x).replace("|", "\\|").replace("\n", " ")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table of ``rows`` (cells through :func:`fmt`)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def _optional_version(module: str) -> Optional[str]:
    try:
        return str(__import__(module).__version__)
    except Exception:
        return None


def machine() -> dict:
    """The machine and library versions a figure was measured with, the date, and the load average."""
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except Exception:
        pass
    torchdeq = _optional_version("torchdeq")
    if torchdeq is None:
        try:
            import torchdeq as _td  # noqa: F401  (0.1.0 has no __version__)
            torchdeq = "0.1.0"
        except Exception:
            pass
    return {
        "cpu": model, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__, "torchdeq": torchdeq,
        "scipy": _optional_version("scipy"), "numpy": np.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load_avg_start": load_average(),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)  # JSON has no NaN/inf; keep them readable rather than invalid
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def source_line(doc: dict, path: Optional[str] = None) -> str:
    """``Source: `COMMAND` -> PATH (date, machine)``: the line that names where a rendered table came from."""
    m = doc.get("machine", {})
    where = f" -> `{path}`" if path else ""
    gpu = f", {m['gpu']}" if m.get("gpu") else ""
    return (f"Source: `{doc.get('command')}`{where} ({m.get('date')}; {m.get('cpu')}{gpu}, {m.get('cores')} cores, "
            f"{m.get('threads')} torch threads; torch {m.get('torch')}; load average {fmt(m.get('load_avg_start'))} "
            f"at start, {fmt(m.get('load_avg_end'))} at end; {fmt(doc.get('wall_s'))} s).")


def render_tables(doc: dict, path: Optional[str] = None, only: Optional[Iterable[str]] = None,
                  every: bool = False) -> str:
    """Markdown of a results document's tables, each headed by its description and source line.

    Args:
        doc: a parsed results.json of one suite.
        path: the results file, named in each table's source line.
        only: table names to print (None: those marked for the report, or all with ``every``).
        every: also print tables kept out of the report (``in_report`` false).
    """
    parts = []
    source = source_line(doc, path)
    for name, tab in doc["tables"].items():
        if only is not None:
            if name not in only:
                continue
        elif not (every or tab.get("in_report", True)):
            continue
        views = tab.get("views") or [[name, tab["columns"]]]
        for title, columns in views:
            head = name if title == name else f"{name}: {title}"
            parts += [f"#### {doc['suite']}: {head}", "", tab["description"], "", source, "",
                      table(list(columns), [[r.get(c) for c in columns] for r in tab["rows"]]), ""]
    return "\n".join(parts)


def render_document(doc: dict, path: Optional[str] = None) -> str:
    """The report.md of one suite: machine and command, notes, plots, then the tables."""
    m = doc["machine"]
    head = [f"### {doc['suite']}", "",
            f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch.set_num_threads({m.get('threads')}), device "
            f"{m.get('device')}{', ' + m['gpu'] if m.get('gpu') else ''}; python {m.get('python')}, torch "
            f"{m.get('torch')}, torchdeq {m.get('torchdeq')}, scipy {m.get('scipy')}. Date {m.get('date')}. 1-min "
            f"load average {fmt(m.get('load_avg_start'))} at start, {fmt(m.get('load_avg_end'))} at end. Command: "
            f"`{doc['command']}` ({fmt(doc.get('wall_s'))} s).", ""]
    head += [f"- {note}" for note in doc["notes"]] + ([""] if doc["notes"] else [])
    head += [f"![{p}]({p})" for p in doc["plots"]] + ([""] if doc["plots"] else [])
    return "\n".join(head) + "\n" + render_tables(doc, path) + "\n"


def suite_document(result: SuiteResult, ctx: RunContext, wall_s: float, info: dict) -> dict:
    """The results.json document of one suite."""
    info = dict(info)
    info["load_avg_end"] = load_average()
    info["device"] = str(ctx.device)
    if ctx.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(ctx.device)
    return _jsonable({
        "schema": SCHEMA_VERSION, "suite": result.suite, "command": ctx.command, "machine": info,
        "settings": {"size": ctx.size, "seeds": ctx.seeds, "device": str(ctx.device), **ctx.overrides,
                     **result.settings},
        "wall_s": round(wall_s, 2),
        "tables": {name: {"description": t.description, "columns": list(t.columns), "rows": t.rows,
                          "views": [[title, list(cols)] for title, cols in t.views], "in_report": t.in_report}
                   for name, t in result.tables.items()},
        "plots": result.plots, "notes": result.notes,
    })


def write_suite(result: SuiteResult, ctx: RunContext, wall_s: float, info: dict) -> dict:
    """Write results.json and report.md into ``ctx.out`` (plots are already there); return the document.

    The document is validated first, so a suite that breaks the schema fails here, not in a later reader.
    """
    doc = suite_document(result, ctx, wall_s, info)
    validate_results(doc)
    ctx.out.mkdir(parents=True, exist_ok=True)
    (ctx.out / "report.md").write_text(render_document(doc, str(ctx.out / "results.json")))
    tmp = ctx.out / "results.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(ctx.out / "results.json")
    return doc


def validate_results(doc: dict, expected_tables: Optional[dict[str, Optional[Sequence[str]]]] = None) -> None:
    """Raise ValueError unless ``doc`` follows the results.json schema (and holds the expected tables).

    Args:
        doc: a parsed results.json of one suite.
        expected_tables: table name -> columns it must declare (None: any columns); all rows must hold every
            declared column.
    """
    if not isinstance(doc, dict):
        raise ValueError(f"a results document is a JSON object; got {type(doc).__name__}")
    missing = [k for k in TOP_KEYS if k not in doc]
    if missing:
        raise ValueError(f"results.json lacks {missing}")
    if doc["schema"] != SCHEMA_VERSION:
        raise ValueError(f"schema {doc['schema']} != {SCHEMA_VERSION}")
    for key in MACHINE_KEYS:
        if key not in doc["machine"]:
            raise ValueError(f"machine lacks {key}")
    if not isinstance(doc["command"], str) or not doc["command"].startswith("python -m benchmarks"):
        raise ValueError(f"command {doc['command']!r} is not a `python -m benchmarks ...` command line")
    for name, tab in doc["tables"].items():
        for key in ("description", "columns", "rows"):
            if key not in tab:
                raise ValueError(f"table {name} lacks {key}")
        if not tab["rows"]:
            raise ValueError(f"table {name} has no rows")
        for i, row in enumerate(tab["rows"]):
            if list(row) != list(tab["columns"]):
                raise ValueError(f"table {name} row {i} columns {list(row)} != declared {tab['columns']}")
        for title, columns in tab.get("views") or []:
            unknown = set(columns) - set(tab["columns"])
            if unknown:
                raise ValueError(f"table {name} view {title!r} names undeclared columns {sorted(unknown)}")
    for name, columns in (expected_tables or {}).items():
        if name not in doc["tables"]:
            raise ValueError(f"table {name} missing (have {sorted(doc['tables'])})")
        if columns is not None and list(doc["tables"][name]["columns"]) != list(columns):
            raise ValueError(f"table {name} columns {doc['tables'][name]['columns']} != {list(columns)}")


def end_with_parent(grace_s: float = 10.0) -> None:
    """End this worker process when the study's process ends, however it ends.

    A suite's process-pool initializer: a study stopped with ``kill`` (or killed outright) would otherwise
    leave its spawned workers training to the end of their runs, holding the cores, and then waiting for work
    that never comes. On Linux the worker gets SIGTERM at once (``prctl``'s parent-death signal), which
    ``deqslots.training.loop`` turns into a checkpoint of the finished step; a watcher thread then ends the process
    ``grace_s`` seconds after the parent is gone, whatever the task did with the signal. Elsewhere only the
    watcher acts.
    """
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()


class InlineExecutor(Executor):
    """``--jobs 1``: runs each task at submission in this process, behind the same interface as the pool.

    A task's exception (Ctrl-C included) propagates from ``submit`` at once rather than waiting in the
    future, so a failed first task does not let the tasks queued after it run first.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def init_worker(threads: int) -> None:
    """A worker process of :func:`worker_pool`: ends with the study, ``threads`` torch threads, no warnings."""
    end_with_parent()
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")  # training's own warnings would interleave across workers on the console


def worker_pool(jobs: int, threads: Optional[int] = None) -> tuple[Executor, Optional[int]]:
    """The executor of ``jobs`` independent runs at a time and the torch threads of each worker.

    One job runs in this process (:class:`InlineExecutor`, threads None: this process's); more go to spawned
    worker processes with ``threads`` each (default: the usable cores shared out).
    """
    if jobs <= 1:
        return InlineExecutor(), None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = threads or max(1, cores // jobs)
    # spawn, not fork: a forked child inherits torch's thread pools and OpenMP state from a process that has
    # already computed, which can deadlock; spawn starts each worker clean.
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker,
                               initargs=(threads,))
    return pool, threads


def autoencoder(arch: str, device: Union[str, torch.device] = "cpu", **changes: Any
                ) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The slot-attention autoencoder ``config_for(arch, **changes)`` initialised from seed 0 on ``device``, and
    its Adam optimiser (lr 1e-4): the model whose training steps the speed suites time."""
    from deqslots import SlotAutoencoder, config_for

    torch.manual_seed(0)
    model = SlotAutoencoder(config_for(arch, **changes)).to(device)
    return model, torch.optim.Adam(model.parameters(), lr=1e-4)


def train_run(config: Any, fresh: bool = True, quiet: bool = False) -> dict:
    """Train a ``deqslots.training.config.TrainConfig``; its summary, with the wall time of the call as ``seconds``.

    Args:
        config: the run.
        fresh: remove ``config.out`` first (the suite's own output of an earlier invocation), so that the run
            starts afresh rather than refusing the folder or resuming it.
        quiet: hide training's warnings.
    """
    from deqslots.training.loop import train

    if fresh and Path(config.out).exists():
        shutil.rmtree(config.out)
    began = time.perf_counter()
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        summary = train(config)
    summary["seconds"] = time.perf_counter() - began
    return summary


def read_metrics(path: Path) -> dict[str, list[float]]:
    """The columns of a run's metrics.csv as floats (empty cells NaN); empty when the run wrote none yet."""
    from deqslots.evaluation.figures import read_metrics as columns

    return columns(path) if Path(path).exists() else {}


def by_size(size: str, tiny: Any, quick: Any, full: Any) -> Any:
    """The value of a setting at ``size`` (``cpu`` and ``full`` take ``full``)."""
    return {"tiny": tiny, "quick": quick}.get(size, full)


def seed_list(ctx: RunContext, default: Sequence[int]) -> list[int]:
    """The seeds of ``--seed-list 0,1,2``, else of ``--seeds N`` (0 .. N-1), else ``default``."""
    text = ctx.overrides.get("seed_list")
    if text:
        try:
            return [int(s) for s in text.split(",") if s]
        except ValueError as err:
            raise UsageError(f"--seed-list takes comma-separated integers, e.g. 0,1,2; got {text!r}") from err
    return list(range(ctx.seeds)) if ctx.seeds else list(default)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend: suites write figures to files, with or without a display."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: Path, name: str) -> str:
    """Lay out, write and close a figure; returns its file name for the report."""
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    pyplot().close(fig)
    return name


def band(ax: Any, x: Sequence[float], curves: Any, label: str, colour: Optional[str] = None, **style: Any) -> None:
    """Mean over ``curves`` (rows of equal length, NaN = missing) with a min-max band: the spread over seeds."""
    data = np.asarray(curves, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a step that every run's NaN leaves empty
        mean, lo, hi = np.nanmean(data, 0), np.nanmin(data, 0), np.nanmax(data, 0)
    line, = ax.plot(x, mean, label=label, color=colour, **style)
    ax.fill_between(x, lo, hi, alpha=0.2, color=line.get_color())
