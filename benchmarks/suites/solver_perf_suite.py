"""Solver performance: ours vs torchdeq 0.1.0 and scipy.optimize, memory of the backward modes, overhead.

Run ``python -m benchmarks.solver_perf [--quick] [--out DIR] [--threads N]``. Sections:

(a) forward solves, ours vs torchdeq (fixed_point_iter / anderson_solver / broyden_solver), same problem,
    tolerance, stop mode and max_iter; f evaluations counted by one wrapper for both libraries;
(b) IFT training step (forward Anderson, implicit backward with a Broyden adjoint solve, loss.backward,
    Adam step), ours vs torchdeq's ``get_deq(ift=True)``;
(c) f evaluations vs ``scipy.optimize.anderson`` / ``broyden1`` on the H-equation (and Bratu, Broyden
    tridiagonal), our abs L2 tolerance = scipy's max-norm ``f_tol`` (so ours stops no earlier);
(d) bytes of tensors saved for backward by each backward mode as the forward iteration count grows
    (``torch.autograd.graph.saved_tensors_hooks``, tol=None so the count is exact);
(e) solver overhead: solve time / (nfe x median time of one f call).

Times are medians over interleaved repeats (ours and the other library alternate, order flipped every
repeat) with ``torch.set_num_threads`` fixed. Tables are printed as markdown and written, with the raw
numbers, to ``DIR/report.md`` and ``DIR/results.json`` (default ``runs/bench/solver_perf``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from typing import Callable

import numpy as np
import torch

import solvers
from benchmarks.problems import TanhDEQ, bratu, broyden_tridiagonal, h_equation, tanh_deq

try:  # optional competitors
    import torchdeq
    from torchdeq import get_deq
    from torchdeq.solver import anderson_solver, broyden_solver, fixed_point_iter
except Exception:  # pragma: no cover - reported in the output
    torchdeq = None
try:
    import scipy
    import scipy.optimize as sopt
except Exception:  # pragma: no cover
    scipy = None


# ----------------------------------------------------------------------------------------------------
# helpers


class Counter:
    """Wrap a map and count its calls (the same wrapper is used for every library)."""

    def __init__(self, f: Callable) -> None:
        self.f = f
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.f(*args, **kwargs)


class TimedMap:
    """Wrap a map and add up the wall time spent inside it."""

    def __init__(self, f: Callable) -> None:
        self.f = f
        self.total = 0.0

    def __call__(self, z):
        start = time.perf_counter()
        out = self.f(z)
        self.total += time.perf_counter() - start
        return out


@contextlib.contextmanager
def count_vjps():
    """Count calls of torch.autograd.grad (both libraries compute J^T v with it)."""
    original = torch.autograd.grad
    box = {"calls": 0}

    def counted(*args, **kwargs):
        box["calls"] += 1
        return original(*args, **kwargs)

    torch.autograd.grad = counted
    try:
        yield box
    finally:
        torch.autograd.grad = original


def median_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times) if times else float("nan")


def fmt(x, digits=3) -> str:
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e6):
            return f"{x:.2e}"
        if abs(x) >= 100:
            return f"{x:.0f}"
        return f"{x:.{digits}g}"
    return str(x)


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def machine() -> dict:
    model = platform.processor() or "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except Exception:
        pass
    return {
        "cpu": model, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__,
        "torchdeq": getattr(torchdeq, "__version__", "0.1.0") if torchdeq else None,
        "scipy": scipy.__version__ if scipy else None, "numpy": np.__version__,
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load_avg_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


# ----------------------------------------------------------------------------------------------------
# (a) forward solves


PAIRS = {  # ours, torchdeq's, label of both defaults
    "iterate": (lambda: solvers.Iterate(), "fixed_point_iter"),
    "anderson": (lambda: solvers.Anderson(), "anderson_solver"),
    "broyden": (lambda: solvers.Broyden(), "broyden_solver"),
}


def _ours(f, z0, solver, tol, max_iter, stop_mode):
    with torch.no_grad():
        z, info = solvers.fixed_point(f, z0, forward=solver, backward="onestep", tol=tol, max_iter=max_iter,
                                      stop_mode=stop_mode, on_fail="ignore")
    return z


def _theirs(f, z0, name, tol, max_iter, stop_mode):
    fn = {"fixed_point_iter": fixed_point_iter, "anderson_solver": anderson_solver,
          "broyden_solver": broyden_solver}[name]
    with torch.no_grad():
        z, _, _ = fn(f, z0, max_iter=max_iter, tol=tol, stop_mode=stop_mode)
    return z


def _max_residual(f, z, stop_mode) -> float:
    with torch.no_grad():
        fz = f(z)
        res = torch.linalg.vector_norm(fz - z, dim=1)
        if stop_mode == "rel":
            res = res / (torch.linalg.vector_norm(fz, dim=1) + 1e-9)
    return float(res.max())


def bench_forward(configs, repeats: int) -> list[dict]:
    rows = []
    for cfg in configs:
        prob, batch, dtype, tol, max_iter = cfg["problem"], cfg["batch"], cfg["dtype"], cfg["tol"], cfg["max_iter"]
        stop_mode = cfg.get("stop_mode", "abs")
        f, z0 = prob.make(batch, dtype)
        for key, (make_ours, their_name) in PAIRS.items():
            ours = make_ours()
            c_ours, c_theirs = Counter(f), Counter(f)
            run_ours = functools.partial(_ours, c_ours, z0, ours, tol, max_iter, stop_mode)
            run_theirs = functools.partial(_theirs, c_theirs, z0, their_name, tol, max_iter, stop_mode)
            z_o, z_t = run_ours(), run_theirs()  # warm-up, and the counted run
            nfe_o, nfe_t = c_ours.calls, c_theirs.calls

            def run_f_only(n=nfe_o, f=f, z0=z0):  # the f evaluations alone: a floor for any solver with n evaluations
                with torch.no_grad():
                    z = z0
                    for _ in range(n):
                        z = f(z)

            run_ours(), run_theirs()
            t_o, t_t, t_f = [], [], []
            for r in range(repeats):
                order = [(run_ours, t_o), (run_theirs, t_t), (run_f_only, t_f)]
                for run, sink in (order if r % 2 == 0 else order[::-1]):
                    start = time.perf_counter()
                    run()
                    sink.append(time.perf_counter() - start)
            res_o, res_t = _max_residual(f, z_o, stop_mode), _max_residual(f, z_t, stop_mode)
            row = {
                "problem": prob.name, "B": batch, "dtype": str(dtype).replace("torch.", ""), "tol": tol,
                "stop_mode": stop_mode, "max_iter": max_iter, "solver": key,
                "nfe_ours": nfe_o, "nfe_torchdeq": nfe_t,
                "ms_ours": median_ms(t_o), "ms_torchdeq": median_ms(t_t), "ms_f_only": median_ms(t_f),
                "res_ours": res_o, "res_torchdeq": res_t,
                "ok_ours": res_o <= tol, "ok_torchdeq": res_t <= tol,
                "check_ours": prob.check(z_o), "check_torchdeq": prob.check(z_t),
            }
            row["ratio"] = row["ms_ours"] / row["ms_torchdeq"]
            row["floor"] = row["ms_f_only"] / row["ms_torchdeq"]
            rows.append(row)
            print(f"  [a] {prob.name} B={batch} {key}: nfe {nfe_o}/{nfe_t}, {row['ms_ours']:.2f}/"
                  f"{row['ms_torchdeq']:.2f} ms, ratio {row['ratio']:.2f}", flush=True)
    return rows


# ----------------------------------------------------------------------------------------------------
# (b) IFT training step


def bench_training(cfgs, steps: int, warmup: int = 2) -> list[dict]:
    return [_training_row(cfg, steps, warmup) for cfg in cfgs]


def _training_row(cfg: dict, steps: int, warmup: int) -> dict:
    batch, dim, f_tol, b_tol, max_iter = cfg["batch"], cfg["dim"], cfg["f_tol"], cfg["b_tol"], cfg["max_iter"]
    torch.manual_seed(0)
    ours_model = TanhDEQ(dim=dim, contraction=cfg["contraction"], seed=1)
    their_model = TanhDEQ(dim=dim, contraction=cfg["contraction"], seed=1)
    their_model.load_state_dict(ours_model.state_dict())
    opt_o = torch.optim.Adam(ours_model.parameters(), lr=1e-3)
    opt_t = torch.optim.Adam(their_model.parameters(), lr=1e-3)
    deq = get_deq(core="sliced", ift=True, f_solver="anderson", b_solver="broyden", f_max_iter=max_iter,
                  b_max_iter=max_iter, f_tol=f_tol, b_tol=b_tol, f_stop_mode="abs", b_stop_mode="abs")
    deq.train()
    backward = solvers.Implicit(solver="broyden", tol=b_tol, max_iter=max_iter, stop_mode="abs")
    gen = torch.Generator().manual_seed(2)
    data = [(torch.randn(batch, 64, generator=gen), torch.randn(batch, 10, generator=gen))
            for _ in range(steps + warmup)]

    def step_ours(x, y, counter=None):
        opt_o.zero_grad(set_to_none=True)
        inj = ours_model.u(x)
        f = Counter(lambda z: ours_model.f(z, inj))
        z, info = solvers.fixed_point(f, torch.zeros(batch, dim), forward=solvers.Anderson(), backward=backward,
                                      tol=f_tol, max_iter=max_iter, stop_mode="abs", on_fail="ignore")
        loss = ((ours_model.v(z) - y) ** 2).sum(dim=1).mean()
        loss.backward()
        opt_o.step()
        return f.calls, info

    their_adjoint = {}

    def writer(stat):  # torchdeq reports its adjoint solve here
        their_adjoint["res"] = float(stat["abs_lowest"].max())

    def step_theirs(x, y):
        opt_t.zero_grad(set_to_none=True)
        inj = their_model.u(x)
        f = Counter(lambda z: their_model.f(z, inj))
        z_out, info = deq(f, torch.zeros(batch, dim), backward_writer=writer)
        loss = ((their_model.v(z_out[-1]) - y) ** 2).sum(dim=1).mean()
        loss.backward()
        opt_t.step()
        return f.calls, info

    # Gradient agreement at identical parameters (first batch), before any optimiser step.
    x0, y0 = data[0]
    grads = []
    for model, run in ((ours_model, step_ours), (their_model, step_theirs)):
        saved = [p.detach().clone() for p in model.parameters()]
        opt = opt_o if model is ours_model else opt_t
        opt_state = {k: v for k, v in opt.state.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(x0, y0)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        with torch.no_grad():
            for p, s in zip(model.parameters(), saved):
                p.copy_(s)
        opt.state.clear()
        opt.state.update(opt_state)
    grad_rel_diff = float(torch.linalg.vector_norm(grads[0] - grads[1]) / torch.linalg.vector_norm(grads[1]))

    t_o, t_t, fe_o, fe_t, vjp_o, vjp_t, bconv_o, bconv_t = [], [], [], [], [], [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (x, y) in enumerate(data):
            order = [("o", step_ours), ("t", step_theirs)]
            for who, run in (order if i % 2 == 0 else order[::-1]):
                with count_vjps() as vj:
                    start = time.perf_counter()
                    calls, info = run(x, y)
                    elapsed = time.perf_counter() - start
                if i < warmup:
                    continue
                if who == "o":
                    t_o.append(elapsed), fe_o.append(calls), vjp_o.append(vj["calls"])
                    bconv_o.append(bool(info.backward.converged.all()) if info.backward else False)
                else:
                    t_t.append(elapsed), fe_t.append(calls), vjp_t.append(vj["calls"])
                    bconv_t.append(their_adjoint.get("res", float("inf")) <= b_tol)
    row = {
        "B": batch, "d": dim, "contraction": cfg["contraction"], "f_tol": f_tol, "b_tol": b_tol,
        "max_iter": max_iter, "steps": steps,
        "ms_ours": median_ms(t_o), "ms_torchdeq": median_ms(t_t),
        "f_evals_ours": statistics.median(fe_o), "f_evals_torchdeq": statistics.median(fe_t),
        "vjps_ours": statistics.median(vjp_o), "vjps_torchdeq": statistics.median(vjp_t),
        "adjoint_converged_ours": sum(bconv_o) / len(bconv_o),
        "adjoint_converged_torchdeq": sum(bconv_t) / len(bconv_t), "grad_rel_diff_step0": grad_rel_diff,
    }
    row["ratio"] = row["ms_ours"] / row["ms_torchdeq"]
    print(f"  [b] B={batch} d={dim}: {row['ms_ours']:.2f}/{row['ms_torchdeq']:.2f} ms ratio {row['ratio']:.2f}; "
          f"f {row['f_evals_ours']}/{row['f_evals_torchdeq']}, vjp {row['vjps_ours']}/{row['vjps_torchdeq']}",
          flush=True)
    return row


# ----------------------------------------------------------------------------------------------------
# (c) scipy.optimize


def bench_scipy(f_tols, repeats: int) -> list[dict]:
    rows = []
    problems = [h_equation(), bratu(), broyden_tridiagonal()]
    for prob in problems:
        f_t, z0_t = prob.make(1, torch.float64)
        x0 = z0_t[0].numpy().copy()

        def big_f_np(x, f_t=f_t):
            with torch.no_grad():
                xt = torch.from_numpy(np.asarray(x, dtype=np.float64)).unsqueeze(0)
                return (xt - f_t(xt))[0].numpy()

        for f_tol in f_tols:
            entries = []
            for label, kind in (("scipy anderson (M=5)", "anderson"), ("scipy broyden1", "broyden1")):
                counter = Counter(big_f_np)
                fn = sopt.anderson if kind == "anderson" else sopt.broyden1
                err = None
                start = time.perf_counter()
                try:
                    x = fn(counter, x0.copy(), f_tol=f_tol, maxiter=500)
                except Exception as exc:  # NoConvergence
                    x, err = getattr(exc, "args", [None])[0], type(exc).__name__
                elapsed = time.perf_counter() - start
                xa = np.asarray(x) if x is not None else x0
                res_inf = float(np.abs(big_f_np(xa)).max())
                entries.append((label, counter.calls, res_inf, err is None and res_inf <= f_tol, 1e3 * elapsed,
                                prob.check(torch.from_numpy(xa).unsqueeze(0))))
            for label, solver in (("ours Anderson()", solvers.Anderson()), ("ours Broyden()", solvers.Broyden()),
                                  ("ours Iterate()", solvers.Iterate())):
                counter = Counter(f_t)
                times = []
                for _ in range(max(1, repeats)):
                    counter.calls = 0
                    start = time.perf_counter()
                    with torch.no_grad():
                        z, info = solvers.fixed_point(counter, z0_t, forward=solver, backward="onestep", tol=f_tol,
                                                      max_iter=500, stop_mode="abs", on_fail="ignore")
                    times.append(time.perf_counter() - start)
                res_inf = float((z - f_t(z)).abs().max())
                entries.append((label, counter.calls, res_inf, bool(info.converged.all()) and res_inf <= f_tol,
                                median_ms(times), prob.check(z)))
            if torchdeq is not None:
                for label, name in (("torchdeq anderson_solver", "anderson_solver"),
                                    ("torchdeq broyden_solver", "broyden_solver")):
                    counter = Counter(f_t)
                    start = time.perf_counter()
                    z = _theirs(counter, z0_t, name, f_tol, 500, "abs")
                    elapsed = time.perf_counter() - start
                    res_inf = float((z - f_t(z)).abs().max())
                    entries.append((label, counter.calls, res_inf, res_inf <= f_tol, 1e3 * elapsed, prob.check(z)))
            for label, nfe, res_inf, ok, ms, check in entries:
                rows.append({"problem": prob.name, "f_tol": f_tol, "method": label, "nfe": nfe,
                             "res_maxnorm": res_inf, "ok": ok, "ms": ms, "check": check})
            summary = ", ".join(f"{e[0]}={e[1]}" for e in entries)
            print(f"  [c] {prob.name} f_tol={f_tol:g}: {summary}", flush=True)
    return rows


# ----------------------------------------------------------------------------------------------------
# (d) saved memory of the backward modes


def saved_bytes(fn: Callable[[], torch.Tensor], exclude: tuple[torch.Tensor, ...] = ()) -> tuple[int, int]:
    """Bytes of the distinct storages autograd saves while ``fn`` builds its graph, and the tensor count.

    Storages of ``exclude`` (the parameters and inputs, which exist whatever the backward mode) are left
    out, so the number is the memory the backward mode itself keeps alive.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    storages: dict[int, int] = {}
    count = [0]

    def pack(t: torch.Tensor):
        count[0] += 1
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            storages[ptr] = max(storages.get(ptr, 0), t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    out.sum().backward()  # the graph must be usable
    return sum(storages.values()), count[0]


def bench_memory(iters, batch=32, dim=256) -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, dim, generator=gen).requires_grad_()
    w = (0.9 * torch.linalg.qr(torch.randn(dim, dim, generator=gen))[0]).requires_grad_()
    z0 = torch.zeros(batch, dim)

    def f(z):
        return torch.tanh(torch.addmm(x, z, w))

    modes = [
        ("unrolled (iterate)", solvers.Iterate(keep="last"), solvers.Unrolled()),
        ("unrolled (anderson)", solvers.Anderson(), solvers.Unrolled()),
        ("implicit (broyden adjoint)", solvers.Iterate(), solvers.Implicit()),
        ("onestep", solvers.Iterate(), solvers.OneStep()),
        ("neumann(5)", solvers.Iterate(), solvers.Neumann(terms=5)),
        ("phantom(5, 0.5)", solvers.Iterate(), solvers.Phantom(steps=5, damping=0.5)),
    ]
    state_bytes = batch * dim * 4
    for label, fwd, bwd in modes:
        for t in iters:
            def run(fwd=fwd, bwd=bwd, t=t):
                z, _ = solvers.fixed_point(f, z0, forward=fwd, backward=bwd, tol=None, max_iter=t, on_fail="ignore")
                return z

            nbytes, count = saved_bytes(run, exclude=(x, w))
            rows.append({"mode": label, "iters": t, "saved_bytes": nbytes, "saved_tensors": count,
                         "in_states": nbytes / state_bytes})
        mine = [r for r in rows if r["mode"] == label]
        slope = (mine[-1]["saved_bytes"] - mine[0]["saved_bytes"]) / (mine[-1]["iters"] - mine[0]["iters"])
        for r in mine:
            r["bytes_per_iter"] = slope
        print(f"  [d] {label}: " + ", ".join(f"T={r['iters']}: {r['saved_bytes'] / 1024:.0f} KiB" for r in mine)
              + f" (slope {slope / 1024:.1f} KiB/iter)", flush=True)
    return rows


# ----------------------------------------------------------------------------------------------------
# (e) overhead


def bench_overhead(batches, dims, repeats: int, iters: int = 30) -> list[dict]:
    """Solve time over nfe x (median time of one f call), f timed in the same interleaved repeats."""
    rows = []
    for batch in batches:
        for dim in dims:
            f, _ = tanh_deq(dim, 0.9).make(batch, torch.float32)
            z = torch.randn(batch, dim, generator=torch.Generator().manual_seed(3)) * 0.5
            z0 = torch.zeros(batch, dim)
            for key in ("iterate", "anderson", "broyden"):
                solver = PAIRS[key][0]()
                counter = Counter(f)
                t_pub, t_raw, t_f = [], [], []
                with torch.no_grad():
                    solvers.fixed_point(f, z0, forward=solver, backward="onestep", tol=None, max_iter=iters)
                    for _ in range(repeats):
                        for _ in range(5):
                            start = time.perf_counter()
                            f(z)
                            t_f.append(time.perf_counter() - start)
                        counter.calls = 0
                        start = time.perf_counter()
                        solvers.fixed_point(counter, z0, forward=solver, backward="onestep", tol=None, max_iter=iters)
                        t_pub.append(time.perf_counter() - start)
                        start = time.perf_counter()
                        solver.solve(f, z0, None, iters)
                        t_raw.append(time.perf_counter() - start)
                    # Time spent inside f during a solve (f can run slower there: caches, allocator).
                    timed = TimedMap(f)
                    t_in = []
                    for _ in range(max(3, repeats // 3)):
                        timed.total = 0.0
                        solver.solve(timed, z0, None, iters)
                        t_in.append(timed.total)
                nfe = counter.calls
                row = {"B": batch, "d": dim, "solver": key, "nfe": nfe, "f_ms": median_ms(t_f),
                       "solve_ms": median_ms(t_pub), "solve_raw_ms": median_ms(t_raw)}
                row["overhead"] = row["solve_ms"] / (nfe * row["f_ms"])
                row["overhead_raw"] = row["solve_raw_ms"] / (nfe * row["f_ms"])
                row["f_inside_ms"] = median_ms(t_in) / nfe
                row["overhead_vs_inside"] = row["solve_raw_ms"] / median_ms(t_in)
                rows.append(row)
                print(f"  [e] B={batch} d={dim} {key}: f {row['f_ms']:.3f} ms, solve {row['solve_ms']:.2f} ms, "
                      f"ratio {row['overhead']:.2f} (solve() {row['overhead_raw']:.2f}); f inside "
                      f"{row['f_inside_ms']:.3f} ms, solve()/inside {row['overhead_vs_inside']:.2f}", flush=True)
    return rows


# ----------------------------------------------------------------------------------------------------
# report


def render(results: dict) -> str:
    m = results["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, torch.set_num_threads({m['threads']}); python {m['python']}, "
           f"torch {m['torch']}, torchdeq {m['torchdeq']}, scipy {m['scipy']}, numpy {m['numpy']}. "
           f"Date {m['date']}. Command: `{results['command']}` ({results['wall_s']:.0f} s). 1-min load average "
           f"{fmt(m.get('load_avg_start'))} at start, {fmt(m.get('load_avg_end'))} at end (other jobs share the "
           "machine; ours and the reference runs are interleaved, so ratios are fairer than absolute times).", ""]
    if results.get("forward"):
        out += ["### (a) Forward solves: ours vs torchdeq 0.1.0", "",
                "Same f, z0, tol, stop mode, max_iter; each library with its default solver options (ours: "
                "Anderson(memory=5, ridge=1e-8 relative), Broyden(memory=None: every update kept); torchdeq: "
                "anderson m=6 lam=1e-4, "
                "broyden memory=max_iter). nfe = calls of f counted by one wrapper. res = max over the batch of "
                "||f(z)-z|| recomputed for the returned z. Time = median ms. 'f only / tdeq' = time of our nfe "
                "bare f calls over torchdeq's solve time: the best ratio any solver making our nfe evaluations "
                "could reach.", ""]
        out.append(table(
            ["problem", "B", "dtype", "tol", "solver", "nfe ours", "nfe tdeq", "ms ours", "ms tdeq", "ours/tdeq",
             "f only / tdeq", "res ours", "res tdeq", "ok ours", "ok tdeq"],
            [[r["problem"], r["B"], r["dtype"], r["tol"], r["solver"], r["nfe_ours"], r["nfe_torchdeq"],
              r["ms_ours"], r["ms_torchdeq"], r["ratio"], r["floor"], r["res_ours"], r["res_torchdeq"],
              r["ok_ours"], r["ok_torchdeq"]] for r in results["forward"]]))
        out.append("")
    if results.get("training"):
        out += ["### (b) IFT training step: ours vs torchdeq `get_deq(ift=True)`", "",
                "Tanh DEQ layer z = tanh(z W + U x), readout V z, squared-error loss, Adam. Forward Anderson, "
                "backward: implicit gradient with a Broyden adjoint solve (abs tol), then loss.backward() and "
                "optimizer.step(). f evals = calls of the layer map (forward solve + applications with grad); "
                "vjps = calls of torch.autograd.grad (adjoint solver); both medians per step. adjoint conv. = "
                "fraction of steps whose adjoint residual met b_tol. grad diff = relative difference of the "
                "two libraries' parameter gradients at identical parameters on the first batch.", ""]
        out.append(table(
            ["B", "d", "f_tol", "b_tol", "ms ours", "ms tdeq", "ours/tdeq", "f evals ours", "f evals tdeq",
             "vjps ours", "vjps tdeq", "adjoint conv. ours", "adjoint conv. tdeq", "grad diff"],
            [[r["B"], r["d"], r["f_tol"], r["b_tol"], r["ms_ours"], r["ms_torchdeq"], r["ratio"],
              r["f_evals_ours"], r["f_evals_torchdeq"], r["vjps_ours"], r["vjps_torchdeq"],
              r["adjoint_converged_ours"], r["adjoint_converged_torchdeq"], r["grad_rel_diff_step0"]]
             for r in results["training"]]))
        out.append("")
    if results.get("scipy"):
        out += ["### (c) f evaluations vs scipy.optimize (float64, one system)", "",
                "scipy solves F(x) = x - G(x) = 0 and stops on max|F| <= f_tol; ours and torchdeq stop on "
                "||G(x) - x||_2 <= f_tol (at least as strict). nfe = calls of F (scipy) or G (others), counted "
                "by a wrapper. check = error against the problem's known fact.", ""]
        out.append(table(["problem", "f_tol", "method", "nfe", "max-norm residual", "ok", "ms", "check"],
                         [[r["problem"], r["f_tol"], r["method"], r["nfe"], r["res_maxnorm"], r["ok"], r["ms"],
                           r["check"]] for r in results["scipy"]]))
        out.append("")
    if results.get("memory"):
        iters = sorted({r["iters"] for r in results["memory"]})
        labels = list(dict.fromkeys(r["mode"] for r in results["memory"]))
        out += ["### (d) Bytes saved for backward vs forward iterations (B=32, d=256, float32, tol=None)", "",
                "Distinct storages packed by `torch.autograd.graph.saved_tensors_hooks` while the forward "
                "runs, in KiB, leaving out the parameter W and the input x (present in every mode); one state "
                "[32, 256] is 32 KiB. T = forward evaluations (tol=None makes it exact).", ""]
        rows = []
        for lab in labels:
            mine = [r for r in results["memory"] if r["mode"] == lab]
            vals = {r["iters"]: r["saved_bytes"] for r in mine}
            rows.append([lab] + [vals[t] / 1024 for t in iters] + [mine[0]["bytes_per_iter"] / 1024])
        out.append(table(["mode"] + [f"T={t}" for t in iters] + ["KiB per extra iteration"], rows))
        out.append("")
    if results.get("overhead"):
        out += ["### (e) Solver overhead: solve time / (nfe x time of one f call)", "",
                "tanh DEQ (c=0.9) float32, tol=None, 30 evaluations; f time = median of single calls, timed "
                "in the same interleaved repeats as the solves. 'ratio' uses `solvers.fixed_point` (with its "
                "structure checks), 'solve() ratio' the bare solver object. 'f inside' = mean time of one f call "
                "measured inside the solve; 'solve() / inside' = bare solve time over the time spent in f.", ""]
        out.append(table(["B", "d", "solver", "nfe", "f ms", "solve ms", "ratio", "solve() ratio", "f inside ms",
                          "solve() / inside"],
                         [[r["B"], r["d"], r["solver"], r["nfe"], r["f_ms"], r["solve_ms"], r["overhead"],
                           r["overhead_raw"], r["f_inside_ms"], r["overhead_vs_inside"]] for r in results["overhead"]]))
        out.append("")
    return "\n".join(out)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (about a minute)")
    parser.add_argument("--out", default="runs/bench/solver_perf", help="folder for results.json and report.md")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--only", default="abcde", help="sections to run, e.g. 'ac'")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python -m benchmarks.solver_perf " + " ".join(argv if argv is not None else sys.argv[1:])
    start = time.time()
    results: dict = {"machine": machine(), "command": command.strip(), "quick": args.quick}
    if torchdeq is None:
        print("torchdeq is not installed: sections (a) and (b) skipped")
    quick = args.quick
    if "a" in args.only and torchdeq is not None:
        print("(a) forward solves vs torchdeq")
        tanh_cfgs = ([(32, 256, 0.5), (32, 256, 0.9)] if quick else
                     [(b, d, c) for b in (32, 64) for d in (256, 512) for c in (0.5, 0.9)])
        configs = [{"problem": tanh_deq(d, c), "batch": b, "dtype": torch.float32, "tol": 1e-4, "max_iter": 50}
                   for b, d, c in tanh_cfgs]
        configs.append({"problem": tanh_deq(256, [0.3, 0.6, 0.9, 0.95]), "batch": 32, "dtype": torch.float32,
                        "tol": 1e-4, "max_iter": 50})
        configs.append({"problem": h_equation(), "batch": 1, "dtype": torch.float64, "tol": 1e-8, "max_iter": 100})
        if not quick:
            configs.append({"problem": h_equation(), "batch": 8, "dtype": torch.float64, "tol": 1e-8, "max_iter": 100})
            configs.append({"problem": bratu(lam=[0.5, 1.0, 2.0, 3.0]), "batch": 8, "dtype": torch.float64,
                            "tol": 1e-8, "max_iter": 100})
            configs.append({"problem": broyden_tridiagonal(), "batch": 8, "dtype": torch.float64, "tol": 1e-8,
                            "max_iter": 100})
        results["forward"] = bench_forward(configs, repeats=9 if quick else 21)
    if "b" in args.only and torchdeq is not None:
        print("(b) IFT training step vs torchdeq")
        cfgs = [{"batch": 32, "dim": 256, "contraction": 0.9, "f_tol": 1e-4, "b_tol": 1e-5, "max_iter": 50}]
        if not quick:
            cfgs += [{"batch": 64, "dim": 512, "contraction": 0.9, "f_tol": 1e-4, "b_tol": 1e-5, "max_iter": 50}]
        results["training"] = bench_training(cfgs, steps=10 if quick else 30)
    if "c" in args.only and scipy is not None:
        print("(c) f evaluations vs scipy.optimize")
        results["scipy"] = bench_scipy([6e-6] if quick else [6e-6, 1e-8, 1e-10], repeats=3 if quick else 11)
    if "d" in args.only:
        print("(d) saved memory of the backward modes")
        results["memory"] = bench_memory([3, 7, 15] if quick else [3, 7, 15, 30, 50])
    if "e" in args.only:
        print("(e) solver overhead")
        results["overhead"] = bench_overhead([32] if quick else [32, 64], [256] if quick else [256, 512, 1024],
                                             repeats=5 if quick else 15)
    results["wall_s"] = time.time() - start
    results["machine"]["load_avg_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report = render(results)
    print()
    print(report)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1, default=str)
    with open(os.path.join(args.out, "report.md"), "w") as fh:
        fh.write(report + "\n")
    print(f"\nwrote {args.out}/results.json and report.md ({results['wall_s']:.0f} s)")
    return results


if __name__ == "__main__":
    main()
