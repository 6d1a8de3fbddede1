"""Suite ``solvers``: our iterate / anderson / broyden against torchdeq and scipy.optimize, side by side, on
problems with known answers: ``python -m benchmarks solvers [--quick | --full] [--out DIR]``.

Method: docs/benchmarks/methods.md#solvers
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable, Optional

import numpy as np
import torch

from benchmarks.problems import (Problem, bratu, broyden_tridiagonal, h_equation, integral_equation, max_residual,
                                 slot_attention_step, tanh_deq)
from benchmarks.suites.common import (FORWARD_SOLVERS, Counter, RunContext, SuiteResult, Table, interleaved,
                                      median_ms, our_solver, pyplot, save_figure, torchdeq_solver)

try:  # optional peer: the suite reports None for a missing library rather than failing
    import scipy.optimize as sopt
except Exception:  # pragma: no cover
    sopt = None

__all__ = ["run", "COLUMNS", "TABLES", "Case", "cases"]

FAMILIES = ("iterate", "anderson", "broyden")
LIBRARIES = ("ours", "torchdeq", "scipy")
PEERS = MappingProxyType({"iterate": ("Iterate()", "fixed_point_iter", "linearmixing"),
                          "anderson": ("Anderson()", "anderson_solver", "anderson(M=5)"),
                          "broyden": ("Broyden()", "broyden_solver", "broyden1")})
MEASURES = ("nfe", "ms", "res", "ok", "check", "error")
COLUMNS = ("problem", "B", "D", "dtype", "tol", "max_iter", "family", "peer_torchdeq", "peer_scipy",
           *(f"{what}_{lib}" for what in MEASURES for lib in LIBRARIES),
           "time_ratio_torchdeq", "time_ratio_scipy", "nfe_ratio_torchdeq", "nfe_ratio_scipy")
TABLES = MappingProxyType({"solves": COLUMNS})
# One table would be too wide to read: the report shows evaluations and accuracy, then times and ratios.
_KEY = ("problem", "B", "dtype", "tol", "family")
VIEWS = (("evaluations, residuals, success",
          _KEY + tuple(f"{w}_{lib}" for w in ("nfe", "res", "ok") for lib in LIBRARIES) + ("check_ours",)),
         ("median times (ms) and ratios ours / peer",
          _KEY + tuple(f"ms_{lib}" for lib in LIBRARIES) + ("time_ratio_torchdeq", "time_ratio_scipy",
                                                            "nfe_ratio_torchdeq", "nfe_ratio_scipy")))


@dataclass(frozen=True)
class Case:
    """One problem at one batch size, dtype and tolerance."""

    problem: Problem
    batch: int
    dtype: torch.dtype
    tol: float
    max_iter: int


def cases(size: str) -> tuple[list[Case], int]:
    """The problems of a size and the number of timed repeats."""
    f32, f64 = torch.float32, torch.float64
    if size == "tiny":
        return [Case(tanh_deq(32, 0.9), 4, f32, 1e-4, 40), Case(slot_attention_step(16), 2, f32, 1e-3, 30),
                Case(h_equation(20), 1, f64, 1e-8, 40)], 1
    classic = [Case(h_equation(), 1, f64, 1e-8, 100), Case(integral_equation(), 1, f64, 1e-8, 100),
               Case(broyden_tridiagonal(), 1, f64, 1e-8, 100)]
    sa = Case(slot_attention_step(), 32, f32, 1e-3, 100)
    mixed = Case(tanh_deq(256, [0.3, 0.6, 0.9, 0.95]), 32, f32, 1e-4, 100)
    if size == "quick":
        return [Case(tanh_deq(256, 0.5), 32, f32, 1e-4, 100), Case(tanh_deq(256, 0.9), 32, f32, 1e-4, 100),
                mixed, sa, *classic], 3
    tanh = [Case(tanh_deq(d, c), 32, f32, 1e-4, 100) for d in (64, 256, 1024) for c in (0.5, 0.9, 0.97)]
    return [*tanh, mixed, Case(tanh_deq(256, 0.9), 1, f32, 1e-4, 100), sa,
            Case(slot_attention_step(), 1, f32, 1e-3, 100), *classic, Case(h_equation(), 8, f64, 1e-8, 100),
            Case(bratu(lam=[0.5, 1.0, 2.0, 3.0]), 8, f64, 1e-8, 100)], 11


def _scipy(family: str) -> Optional[Callable]:
    if sopt is None:
        return None
    fn = {"iterate": sopt.linearmixing, "anderson": sopt.anderson, "broyden": sopt.broyden1}[family]

    def run(f, z0, tol, max_iter):
        shape, dtype, device = z0.shape, z0.dtype, z0.device

        def big_f(x: np.ndarray) -> np.ndarray:  # root of f(z) - z, the whole batch as one system
            z = torch.as_tensor(np.asarray(x).reshape(shape)).to(dtype=dtype, device=device)
            with torch.no_grad():
                return (f(z) - z).double().cpu().numpy().ravel()

        def per_sample_l2(r: np.ndarray) -> float:
            return float(np.linalg.norm(np.asarray(r).reshape(shape[0], -1), axis=1).max())

        x0 = z0.double().cpu().numpy().ravel()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                x = fn(big_f, x0, alpha=1.0, f_tol=tol, maxiter=max_iter, tol_norm=per_sample_l2)
            except sopt.NoConvergence as exc:  # carries the last iterate
                x = exc.args[0]
            except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                x = np.full_like(x0, np.nan)
        return torch.as_tensor(np.asarray(x).reshape(shape)).to(dtype=dtype, device=device)
    return run


def _bench_case(case: Case, family: str, repeats: int, ctx: RunContext) -> dict:
    f, z0 = case.problem.make(case.batch, case.dtype, ctx.device)
    runners = {"ours": our_solver(FORWARD_SOLVERS[family](), "onestep", nonfinite="best"),
               "torchdeq": torchdeq_solver(PEERS[family][1]), "scipy": _scipy(family)}
    runners = {lib: r for lib, r in runners.items() if r is not None}
    row = {"problem": case.problem.name, "B": case.batch, "D": case.problem.dim,
           "dtype": str(case.dtype).replace("torch.", ""), "tol": case.tol, "max_iter": case.max_iter,
           "family": family, "peer_torchdeq": PEERS[family][1], "peer_scipy": PEERS[family][2],
           **{f"{what}_{lib}": None for what in MEASURES for lib in LIBRARIES}}
    answers = {}
    for lib, runner in runners.items():  # the counted run, which also warms up
        counter = Counter(f)
        try:
            answers[lib] = runner(counter, z0, case.tol, case.max_iter)
        except Exception as exc:  # a crash is a result (e.g. a singular least-squares system)
            row.update({f"error_{lib}": f"{type(exc).__name__}: {str(exc)[:80]}", f"ok_{lib}": False})
        row[f"nfe_{lib}"] = counter.calls
    times = interleaved({lib: lambda lib=lib: runners[lib](f, z0, case.tol, case.max_iter) for lib in answers},
                        repeats, ctx.device, rotate=True)  # who goes first rotates
    for lib, z in answers.items():
        res = max_residual(f, z)
        row.update({f"ms_{lib}": median_ms(times[lib]), f"res_{lib}": res,
                    f"ok_{lib}": bool(res == res and res <= case.tol), f"check_{lib}": case.problem.check(z)})

    def ratio(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    for lib in ("torchdeq", "scipy"):
        row[f"time_ratio_{lib}"] = ratio(row["ms_ours"], row[f"ms_{lib}"])
        row[f"nfe_ratio_{lib}"] = ratio(row["nfe_ours"], row[f"nfe_{lib}"])
    return row


def _plot(rows: list[dict], out: Path) -> str:
    plt = pyplot()
    labels = [f"{r['problem']} B={r['B']} [{r['family'][:3]}]" for r in rows]
    y = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.28 * len(rows) + 1.5), sharey=True)
    for ax, key, title in ((axes[0], "time_ratio", "time ours / peer (log)"),
                           (axes[1], "nfe_ratio", "nfe ours / peer (log)")):
        for i, (lib, colour) in enumerate((("torchdeq", "tab:blue"), ("scipy", "tab:orange"))):
            vals = [r[f"{key}_{lib}"] or np.nan for r in rows]
            ax.barh(y + (i - 0.5) * 0.4, vals, height=0.4, color=colour, label=f"vs {lib}")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=7)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(labels, fontsize=6)
    axes[0].invert_yaxis()
    return save_figure(fig, out, "solvers_ratios.png")


def run(ctx: RunContext, bar) -> SuiteResult:
    """Run the suite at ``ctx.size``; ``bar`` is a tqdm bar advanced once per (problem, family)."""
    plan, repeats = cases(ctx.size)
    result = SuiteResult("solvers", {"repeats": repeats, "stop_mode": "abs (largest per-sample L2 norm of f(z) - z)"})
    tab = result.tables["solves"] = Table(
        f"One row per problem and solver family. nfe = calls of f (one counting wrapper for all); ms = median "
        f"wall time of {repeats} interleaved repeats; res = largest per-sample ||f(z) - z||_2 of the returned z, "
        "recomputed here; ok = finite and res <= tol; check = error against the problem's known fact (tanh, "
        "slot attention: the residual again; H-equation: |mean x - exact|; Bratu: |u(1/2) - exact|; Broyden "
        "tridiagonal: max|F|; integral equation: max(|F_29|, |F_28|)). Ratios are ours over the peer (< 1: ours "
        "faster / fewer evaluations). error = exception raised by a solver, if any.", COLUMNS, views=VIEWS)
    bar.reset(total=len(plan) * len(FAMILIES))
    for case in plan:
        for family in FAMILIES:
            bar.set_postfix_str(f"{case.problem.name} B={case.batch} {family}")
            tab.add(**_bench_case(case, family, repeats, ctx))
            bar.update()
    if sopt is None:
        result.notes.append("scipy is not installed: its columns are empty")
    if torchdeq_solver("fixed_point_iter") is None:
        result.notes.append("torchdeq is not installed: its columns are empty")
    result.notes += [f"{r['problem']} B={r['B']} {r['family']} {lib} raised: {r['error_' + lib]}"
                     for r in tab.rows for lib in LIBRARIES if r["error_" + lib]]
    result.plots.append(_plot(tab.rows, ctx.out))
    return result
