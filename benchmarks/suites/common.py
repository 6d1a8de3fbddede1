"""What every suite shares: the run context, the results document, timing, and writing the outputs.

A suite returns a :class:`SuiteResult`: named tables (declared columns, one dict per row), notes and plots.
:func:`write_suite` turns it into ``DIR/results.json`` (every raw figure, the machine, torch version and
command), ``DIR/report.md`` and the PNGs. The schema is fixed by :data:`SCHEMA_VERSION` and checked by
:func:`validate_results`, which the tests call.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

import torch

from benchmarks.solver_perf import fmt, table

__all__ = ["SCHEMA_VERSION", "SIZES", "RunContext", "Table", "SuiteResult", "resolve_device", "sync", "time_call",
           "median", "write_suite", "validate_results", "render_tables"]

SCHEMA_VERSION = 1
# tiny: the test suite's size; quick: ~2 minutes; cpu: the variants study at CPU scale (that suite's default);
# full: the largest sizes (every other suite's default)
SIZES = ("tiny", "quick", "cpu", "full")
TOP_KEYS = ("schema", "suite", "command", "machine", "settings", "wall_s", "tables", "plots", "notes")


@dataclass(frozen=True)
class RunContext:
    """Settings shared by all suites of one invocation.

    Attributes:
        size: one of :data:`SIZES` (a suite knows the sizes it defines).
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
    """A results table: declared columns and rows holding every one of them."""

    description: str
    columns: tuple[str, ...]
    rows: list[dict] = field(default_factory=list)

    def add(self, **row: Any) -> dict:
        """Append a row; a missing or unknown column is a bug in the suite, so it raises."""
        missing, extra = set(self.columns) - set(row), set(row) - set(self.columns)
        if missing or extra:
            raise KeyError(f"row columns differ from the table's: missing {sorted(missing)}, extra {sorted(extra)}")
        self.rows.append({c: row[c] for c in self.columns})
        return self.rows[-1]


@dataclass
class SuiteResult:
    """What a suite hands back: tables by name, plots (file names in the out folder), notes, settings."""

    suite: str
    settings: dict
    tables: dict[str, Table] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report: str = ""


def resolve_device(name: str) -> torch.device:
    """``"cpu"`` or ``"cuda"``; asking for CUDA without one is an error that says so."""
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda; got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch.cuda.is_available() is False on this machine "
                           f"(torch {torch.__version__}); run with --device cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    """Wait for queued kernels, so a wall-clock interval covers the work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds one call of ``fn`` takes, synchronised on ``device``, and its result."""
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def median(values: Sequence[float]) -> float:
    vals = sorted(v for v in values if v == v)
    if not vals:
        return float("nan")
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else 0.5 * (vals[mid - 1] + vals[mid])


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)  # JSON has no NaN/inf; keep them readable rather than invalid
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def render_tables(result: SuiteResult, only: Optional[Iterable[str]] = None) -> str:
    """Markdown of the tables (description, then the table) in the order they were created."""
    parts = []
    for name, tab in result.tables.items():
        if only is not None and name not in only:
            continue
        parts += [f"#### {result.suite}: {name}", "", tab.description, "",
                  table(list(tab.columns), [[r[c] for c in tab.columns] for r in tab.rows]), ""]
    return "\n".join(parts)


def suite_document(result: SuiteResult, ctx: RunContext, wall_s: float, info: dict) -> dict:
    """The results.json document of one suite."""
    info = dict(info)
    info["load_avg_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info["device"] = str(ctx.device)
    if ctx.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(ctx.device)
    return _jsonable({
        "schema": SCHEMA_VERSION, "suite": result.suite, "command": ctx.command, "machine": info,
        "settings": {"size": ctx.size, "seeds": ctx.seeds, "device": str(ctx.device), **ctx.overrides,
                     **result.settings},
        "wall_s": round(wall_s, 2),
        "tables": {name: {"description": t.description, "columns": list(t.columns), "rows": t.rows}
                   for name, t in result.tables.items()},
        "plots": result.plots, "notes": result.notes,
    })


def write_suite(result: SuiteResult, ctx: RunContext, wall_s: float, info: dict) -> dict:
    """Write results.json and report.md into ``ctx.out`` (plots are already there); return the document."""
    doc = suite_document(result, ctx, wall_s, info)
    ctx.out.mkdir(parents=True, exist_ok=True)
    m = doc["machine"]
    head = [f"### {result.suite}", "",
            f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch.set_num_threads({m.get('threads')}), device "
            f"{m.get('device')}; python {m.get('python')}, torch {m.get('torch')}, torchdeq {m.get('torchdeq')}, "
            f"scipy {m.get('scipy')}. Date {m.get('date')}. 1-min load average {fmt(m.get('load_avg_start'))} at "
            f"start, {fmt(m.get('load_avg_end'))} at end. Command: `{ctx.command}` ({wall_s:.0f} s).", ""]
    head += [f"- {note}" for note in result.notes] + ([""] if result.notes else [])
    head += [f"![{p}]({p})" for p in result.plots] + ([""] if result.plots else [])
    (ctx.out / "report.md").write_text("\n".join(head) + "\n" + (result.report or render_tables(result)) + "\n")
    tmp = ctx.out / "results.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(ctx.out / "results.json")
    return doc


def validate_results(doc: dict, expected_tables: Optional[dict[str, Sequence[str]]] = None) -> None:
    """Raise ValueError unless ``doc`` follows the results.json schema (and holds the expected tables).

    Args:
        doc: a parsed results.json of one suite.
        expected_tables: table name -> columns it must declare (all rows must hold every declared column).
    """
    missing = [k for k in TOP_KEYS if k not in doc]
    if missing:
        raise ValueError(f"results.json lacks {missing}")
    if doc["schema"] != SCHEMA_VERSION:
        raise ValueError(f"schema {doc['schema']} != {SCHEMA_VERSION}")
    for key in ("torch", "cpu", "date", "device"):
        if key not in doc["machine"]:
            raise ValueError(f"machine lacks {key}")
    for name, tab in doc["tables"].items():
        for key in ("description", "columns", "rows"):
            if key not in tab:
                raise ValueError(f"table {name} lacks {key}")
        if not tab["rows"]:
            raise ValueError(f"table {name} has no rows")
        for i, row in enumerate(tab["rows"]):
            if list(row) != list(tab["columns"]):
                raise ValueError(f"table {name} row {i} columns {list(row)} != declared {tab['columns']}")
    for name, columns in (expected_tables or {}).items():
        if name not in doc["tables"]:
            raise ValueError(f"table {name} missing (have {sorted(doc['tables'])})")
        if list(doc["tables"][name]["columns"]) != list(columns):
            raise ValueError(f"table {name} columns {doc['tables'][name]['columns']} != {list(columns)}")
