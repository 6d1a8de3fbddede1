"""Suite ``solver-perf``: ours vs torchdeq 0.1.0 and scipy.optimize, memory of the backward modes, overhead:
``python -m benchmarks solver-perf [--quick] [--out DIR] [--threads N] [--only SECTIONS]``.

Method: docs/benchmarks/methods.md#solver-perf
"""

from __future__ import annotations

import functools
import statistics
import time
import warnings
from types import MappingProxyType
from typing import Optional

import numpy as np
import torch

import solvers
from solvers.forward._progress import write_slot
from solvers.forward.anderson import _write_row_col
from benchmarks.problems import TanhDEQ, bratu, broyden_tridiagonal, h_equation, max_residual, tanh_deq
from benchmarks.suites.common import (FORWARD_SOLVERS, Counter, Option, RunContext, SuiteResult, TimedMap, UsageError,
                                      count_vjps, f_only, interleaved, interleaved_ms, median_ms, our_solver,
                                      rows_table, saved_bytes, time_call, torchdeq_solver)

try:  # optional competitors: a section whose library is missing is skipped and a note says so
    from torchdeq import get_deq
except Exception:  # pragma: no cover - reported in the output
    get_deq = None
try:
    import scipy.optimize as sopt
except Exception:  # pragma: no cover
    sopt = None

__all__ = ["run", "OPTIONS", "TABLES", "bench_forward", "bench_training", "bench_scipy", "bench_memory",
           "bench_overhead", "bench_update", "anderson_update"]

SECTIONS = MappingProxyType({"a": "forward", "b": "training", "c": "scipy", "d": "memory", "e": "overhead",
                             "f": "update"})
DEFAULT_SECTIONS = "abcde"  # (f) compiles with inductor (a minute or more here): only when asked for
# the tables a default run writes (section f's "update" table comes only with --only f)
TABLES = MappingProxyType({name: None for letter, name in SECTIONS.items() if letter in DEFAULT_SECTIONS})
# torchdeq's solver of each of our families (both with their defaults)
THEIRS = MappingProxyType({"iterate": "fixed_point_iter", "anderson": "anderson_solver", "broyden": "broyden_solver"})
# Under no_grad "unrolled" returns the forward solver's own result: the timings and f-call counts are the solver's
# alone (the other modes apply f once more at the solution, in inference too, so the value does not depend on the
# grad mode).
SOLVE_ONLY = "unrolled"
SCIPY_KEYS = ("problem", "f_tol", "method", "nfe", "res_maxnorm", "ok", "ms", "check")  # section (c)'s columns


def bench_forward(configs, repeats: int) -> list[dict]:
    """(a) Forward solves, ours vs torchdeq, the f evaluations alone as the floor."""
    rows = []
    for cfg in configs:
        prob, batch, dtype, tol, max_iter = cfg["problem"], cfg["batch"], cfg["dtype"], cfg["tol"], cfg["max_iter"]
        stop_mode = cfg.get("stop_mode", "abs")
        f, z0 = prob.make(batch, dtype)
        for key, solver in FORWARD_SOLVERS.items():
            c_ours, c_theirs = Counter(f), Counter(f)
            run_ours = functools.partial(our_solver(solver(), SOLVE_ONLY), c_ours, z0, tol, max_iter, stop_mode)
            run_theirs = functools.partial(torchdeq_solver(THEIRS[key]), c_theirs, z0, tol, max_iter, stop_mode)
            z_o, z_t = run_ours(), run_theirs()  # warm-up, and the counted run
            nfe_o, nfe_t = c_ours.calls, c_theirs.calls
            ms = interleaved_ms({"ours": run_ours, "torchdeq": run_theirs,
                                 "f_only": functools.partial(f_only, f, z0, nfe_o)}, repeats, warmup=True)
            res_o, res_t = (max_residual(f, z, relative=stop_mode == "rel") for z in (z_o, z_t))
            rows.append({
                "problem": prob.name, "B": batch, "dtype": str(dtype).replace("torch.", ""), "tol": tol,
                "stop_mode": stop_mode, "max_iter": max_iter, "solver": key,
                "nfe_ours": nfe_o, "nfe_torchdeq": nfe_t,
                "ms_ours": ms["ours"], "ms_torchdeq": ms["torchdeq"], "ms_f_only": ms["f_only"],
                "res_ours": res_o, "res_torchdeq": res_t,
                "ok_ours": res_o <= tol, "ok_torchdeq": res_t <= tol,
                "check_ours": prob.check(z_o), "check_torchdeq": prob.check(z_t),
                "ratio": ms["ours"] / ms["torchdeq"], "floor": ms["f_only"] / ms["torchdeq"],
            })
            print(f"  [a] {prob.name} B={batch} {key}: nfe {nfe_o}/{nfe_t}, {ms['ours']:.2f}/{ms['torchdeq']:.2f} "
                  f"ms, ratio {rows[-1]['ratio']:.2f}", flush=True)
    return rows


def bench_training(cfg: dict, steps: int, warmup: int = 2) -> dict:
    """(b) IFT training steps of one tanh DEQ layer, ours vs torchdeq's get_deq(ift=True), interleaved."""
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
    their_adjoint = {}

    def step_ours(x, y) -> tuple[int, bool]:
        opt_o.zero_grad(set_to_none=True)
        inj = ours_model.u(x)
        f = Counter(lambda z: ours_model.f(z, inj))
        z, info = solvers.fixed_point(f, torch.zeros(batch, dim), forward=solvers.Anderson(), backward=backward,
                                      tol=f_tol, max_iter=max_iter, stop_mode="abs", on_fail="ignore")
        loss = ((ours_model.v(z) - y) ** 2).sum(dim=1).mean()
        loss.backward()
        opt_o.step()
        return f.calls, info

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
    for model, run, opt in ((ours_model, step_ours, opt_o), (their_model, step_theirs, opt_t)):
        saved = [p.detach().clone() for p in model.parameters()]
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

    def converged(who: str, info) -> bool:  # the adjoint solve met b_tol
        if who == "torchdeq":
            return their_adjoint.get("res", float("inf")) <= b_tol
        return bool(info.backward.converged.all()) if info.backward else False

    seen: dict[str, dict[str, list]] = {who: {"ms": [], "f": [], "vjps": [], "ok": []} for who in ("ours", "torchdeq")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (x, y) in enumerate(data):
            order = [("ours", step_ours), ("torchdeq", step_theirs)]
            for who, run in (order if i % 2 == 0 else order[::-1]):
                with count_vjps() as vj:
                    elapsed, (calls, info) = time_call(functools.partial(run, x, y))
                if i >= warmup:
                    for key, value in zip(seen[who], (elapsed, calls, vj["calls"], converged(who, info))):
                        seen[who][key].append(value)
    ours, theirs = seen["ours"], seen["torchdeq"]
    row = {
        "B": batch, "d": dim, "contraction": cfg["contraction"], "f_tol": f_tol, "b_tol": b_tol,
        "max_iter": max_iter, "steps": steps,
        "ms_ours": median_ms(ours["ms"]), "ms_torchdeq": median_ms(theirs["ms"]),
        "f_evals_ours": statistics.median(ours["f"]), "f_evals_torchdeq": statistics.median(theirs["f"]),
        "vjps_ours": statistics.median(ours["vjps"]), "vjps_torchdeq": statistics.median(theirs["vjps"]),
        "adjoint_converged_ours": sum(ours["ok"]) / len(ours["ok"]),
        "adjoint_converged_torchdeq": sum(theirs["ok"]) / len(theirs["ok"]), "grad_rel_diff_step0": grad_rel_diff,
    }
    row["ratio"] = row["ms_ours"] / row["ms_torchdeq"]
    print(f"  [b] B={batch} d={dim}: {row['ms_ours']:.2f}/{row['ms_torchdeq']:.2f} ms ratio {row['ratio']:.2f}; "
          f"f {row['f_evals_ours']}/{row['f_evals_torchdeq']}, vjp {row['vjps_ours']}/{row['vjps_torchdeq']}",
          flush=True)
    return row


def bench_scipy(f_tols, repeats: int, problems=None) -> list[dict]:
    """(c) f evaluations against scipy.optimize's anderson and broyden1 (and torchdeq's, when installed)."""
    rows = []
    for prob in problems or [h_equation(), bratu(), broyden_tridiagonal()]:
        f_t, z0_t = prob.make(1, torch.float64)
        x0 = z0_t[0].numpy().copy()

        def big_f_np(x, f_t=f_t):
            with torch.no_grad():
                xt = torch.from_numpy(np.asarray(x, dtype=np.float64)).unsqueeze(0)
                return (xt - f_t(xt))[0].numpy()

        for f_tol in f_tols:
            entries = []
            for label, fn in (("scipy anderson (M=5)", sopt.anderson), ("scipy broyden1", sopt.broyden1)):
                counter, err = Counter(big_f_np), None
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
            for name in ("anderson", "broyden", "iterate"):
                counter, solver, times = Counter(f_t), FORWARD_SOLVERS[name](), []
                for _ in range(max(1, repeats)):
                    counter.calls = 0
                    start = time.perf_counter()
                    with torch.no_grad():
                        z, info = solvers.fixed_point(counter, z0_t, forward=solver, backward=SOLVE_ONLY, tol=f_tol,
                                                      max_iter=500, stop_mode="abs", on_fail="ignore")
                    times.append(time.perf_counter() - start)
                res_inf = float((z - f_t(z)).abs().max())
                entries.append((f"ours {type(solver).__name__}()", counter.calls, res_inf,
                                bool(info.converged.all()) and res_inf <= f_tol, median_ms(times), prob.check(z)))
            for name in ("anderson_solver", "broyden_solver") if get_deq is not None else ():
                counter = Counter(f_t)
                elapsed, z = time_call(functools.partial(torchdeq_solver(name), counter, z0_t, f_tol, 500))
                res_inf = float((z - f_t(z)).abs().max())
                entries.append((f"torchdeq {name}", counter.calls, res_inf, res_inf <= f_tol, 1e3 * elapsed,
                                prob.check(z)))
            rows += [dict(zip(SCIPY_KEYS, (prob.name, f_tol, *e))) for e in entries]
            summary = ", ".join(f"{e[0]}={e[1]}" for e in entries)
            print(f"  [c] {prob.name} f_tol={f_tol:g}: {summary}", flush=True)
    return rows


def bench_memory(iters, batch=32, dim=256) -> list[dict]:
    """(d) Bytes saved for backward by each backward mode as the forward iteration count grows."""
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


def bench_overhead(batches, dims, repeats: int, iters: int = 30) -> list[dict]:
    """(e) Solve time over nfe x (median time of one f call), f timed in the same interleaved repeats."""
    rows = []
    for batch in batches:
        for dim in dims:
            f, _ = tanh_deq(dim, 0.9).make(batch, torch.float32)
            z = torch.randn(batch, dim, generator=torch.Generator().manual_seed(3)) * 0.5
            z0 = torch.zeros(batch, dim)
            for key, make in FORWARD_SOLVERS.items():
                solver = make()
                counter = Counter(f)
                t_pub, t_raw, t_f = [], [], []
                with torch.no_grad():
                    solvers.fixed_point(f, z0, forward=solver, backward=SOLVE_ONLY, tol=None, max_iter=iters)
                    for _ in range(repeats):
                        for _ in range(5):
                            start = time.perf_counter()
                            f(z)
                            t_f.append(time.perf_counter() - start)
                        counter.calls = 0
                        start = time.perf_counter()
                        solvers.fixed_point(counter, z0, forward=solver, backward=SOLVE_ONLY, tol=None, max_iter=iters)
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


def anderson_update(fx: torch.Tensor, x: torch.Tensor, g_prev: torch.Tensor, fx_prev: torch.Tensor,
                    d_g: torch.Tensor, d_mix: torch.Tensor, gram: torch.Tensor, slot: int,
                    solver: Optional[solvers.Anderson] = None) -> tuple[torch.Tensor, ...]:
    """One step of :class:`solvers.Anderson` (damping 1, history full) after ``f(x)``, outside autograd.

    The solver's torch-path step, built from its own pieces: the residual and its per-sample norm, the newest
    differences written into history slot ``slot`` (``write_slot``, in place), the Gram row and right-hand side
    from one batched product written into ``gram`` (``_write_row_col``), the ridge-regularised m x m solve in
    float64 (``Anderson._mix``) and the mixing ``x_new = f(x) - dF gamma``. Returns
    ``(x_new, g, residual, d_g, d_mix, gram)``.
    """
    solver = solvers.Anderson() if solver is None else solver
    g = fx - x
    res = torch.linalg.vector_norm(g, dim=1)
    new_dg = g - g_prev
    d_g = write_slot(d_g, slot, new_dg)
    d_mix = write_slot(d_mix, slot, fx - fx_prev)
    prods = torch.bmm(torch.stack((new_dg, g), dim=1), d_g.transpose(1, 2)).to(torch.float64)  # [B, 2, m]
    gram = _write_row_col(gram, slot, prods[:, 0], gram.shape[1])
    gamma = solver._mix(gram, prods[:, 1:2].transpose(1, 2), inplace=False)  # [B, m, 1]
    x_new = torch.baddbmm(fx.unsqueeze(1), gamma.transpose(1, 2).to(fx.dtype), d_mix, alpha=-1.0).squeeze(1)
    return x_new, g, res, d_g, d_mix, gram


def bench_update(batches, dims, repeats: int, memory: int = 5, backend: str = "inductor",
                 calls: int = 200) -> list[dict]:
    """(f) Microseconds per call of f, of :func:`anderson_update` eager and compiled (``backend``), interleaved."""

    def block(fn, *args) -> None:  # calls in a row, so that one timing covers many short calls
        for _ in range(calls):
            fn(*args)

    rows = []
    for batch in batches:
        for dim in dims:
            f, _ = tanh_deq(dim, 0.9).make(batch, torch.float32)
            gen = torch.Generator().manual_seed(5)
            x, g_prev, fx_prev = (torch.randn(batch, dim, generator=gen) for _ in range(3))
            d_g, d_mix = (torch.randn(batch, memory, dim, generator=gen) for _ in range(2))
            gram = torch.bmm(d_g, d_g.transpose(1, 2)).to(torch.float64)
            slot = 2
            with torch.no_grad():
                fx = f(x)
                args = (fx, x, g_prev, fx_prev, d_g, d_mix, gram, slot)
                compiled = torch.compile(anderson_update, backend=backend, dynamic=False)
                compile_s, _ = time_call(functools.partial(compiled, *args))
                eager_out, compiled_out = anderson_update(*args), compiled(*args)
                max_diff = max(float((a.double() - b.double()).abs().max()) for a, b in zip(eager_out, compiled_out))
                times = interleaved({"f": functools.partial(block, f, x),
                                     "eager": functools.partial(block, anderson_update, *args),
                                     "compiled": functools.partial(block, compiled, *args)}, repeats)
            us = {k: 1e6 * statistics.median(v) / calls for k, v in times.items()}
            row = {"B": batch, "d": dim, "memory": memory, "backend": backend, "compile_s": compile_s,
                   "f_us": us["f"], "eager_us": us["eager"], "compiled_us": us["compiled"],
                   "speedup": us["eager"] / us["compiled"], "eager_over_f": us["eager"] / us["f"],
                   "compiled_over_f": us["compiled"] / us["f"], "max_abs_diff": max_diff}
            rows.append(row)
            print(f"  [f] B={batch} d={dim}: f {us['f']:.1f} us, update eager {us['eager']:.1f} us, compiled "
                  f"{us['compiled']:.1f} us ({row['speedup']:.2f}x; compile {compile_s:.1f} s)", flush=True)
    return rows


DESCRIPTIONS = MappingProxyType({
    "forward": "(a) Forward solves, ours vs torchdeq 0.1.0. Same f, z0, tol, stop mode, max_iter; each library with "
               "its default solver options (ours: Anderson(memory=5, ridge=1e-8 relative), Broyden(memory=None: every "
               "update kept); torchdeq: anderson m=6 lam=1e-4, broyden memory=max_iter). nfe = calls of f counted by "
               "one wrapper. res = max over the batch of ||f(z)-z|| recomputed for the returned z. ms = median. "
               "ratio = ms ours / ms torchdeq; floor = time of our nfe bare f calls over torchdeq's solve time (the "
               "best ratio any solver making our nfe evaluations could reach).",
    "training": "(b) IFT training step, ours vs torchdeq `get_deq(ift=True)`. Tanh DEQ layer z = tanh(z W + U x), "
                "readout V z, squared-error loss, Adam. Forward Anderson, backward: implicit gradient with a Broyden "
                "adjoint solve (abs tol), then loss.backward() and optimizer.step(). f_evals = calls of the layer "
                "map; vjps = calls of torch.autograd.grad (adjoint solver); both medians per step. "
                "adjoint_converged = fraction of steps whose adjoint residual met b_tol. grad_rel_diff_step0 = "
                "relative difference of the two libraries' parameter gradients at identical parameters on the "
                "first batch.",
    "scipy": "(c) f evaluations vs scipy.optimize (float64, one system). scipy solves F(x) = x - G(x) = 0 and stops "
             "on max|F| <= f_tol; ours and torchdeq stop on ||G(x) - x||_2 <= f_tol (at least as strict). nfe = "
             "calls of F (scipy) or G (others), counted by a wrapper. check = error against the problem's known "
             "fact.",
    "memory": "(d) Bytes saved for backward vs forward iterations (float32, tol=None so T is exact). Distinct "
              "storages packed by `torch.autograd.graph.saved_tensors_hooks` while the forward runs, leaving out "
              "the parameter W and the input x (present in every mode); in_states = that in units of one state "
              "[B, d]; bytes_per_iter = slope over T.",
    "overhead": "(e) Solver overhead: solve time / (nfe x time of one f call). tanh DEQ (c=0.9) float32, tol=None, "
                "30 evaluations; f time = median of single calls, timed in the same interleaved repeats as the "
                "solves. overhead uses `solvers.fixed_point` (with its structure checks), overhead_raw the bare "
                "solver object; f_inside_ms = mean time of one f call inside the solve; overhead_vs_inside = bare "
                "solve time over the time spent in f.",
    "update": "(f) Anderson's step after f, eager vs torch.compile: us per call of `anderson_update` (the solver's "
              "arithmetic after f(x) with a full history of m = 5: residual and norm, history writes, Gram row, "
              "float64 ridge solve, mixing; out of place) and of f (tanh DEQ, c = 0.9), medians of interleaved "
              "blocks of calls, float32, no autograd. compile_s = first compiled call; eager_over_f / "
              "compiled_over_f = the update's cost in units of f, i.e. what a step adds to f before the host's "
              "stopping decision; max_abs_diff = eager vs compiled outputs.",
})


OPTIONS = (Option("--only", "sections to run, e.g. 'ac' (default abcde; f only when named: "
                  + ", ".join(f"{k} {v}" for k, v in SECTIONS.items()) + ")"),)


def _plan(size: str) -> dict:
    f32, f64 = torch.float32, torch.float64
    if size == "tiny":
        return {"forward": [{"problem": tanh_deq(32, 0.9), "batch": 4, "dtype": f32, "tol": 1e-4, "max_iter": 30},
                            {"problem": h_equation(20), "batch": 1, "dtype": f64, "tol": 1e-8, "max_iter": 50}],
                "forward_repeats": 1,
                "training": [{"batch": 4, "dim": 32, "contraction": 0.9, "f_tol": 1e-4, "b_tol": 1e-5, "max_iter": 30}],
                "training_steps": 2, "scipy_tols": [6e-6], "scipy_repeats": 1, "scipy_problems": [h_equation(20)],
                "memory": ([3, 7], 4, 32), "overhead": ([4], [32], 2),
                "update": ([4], [32], 2, "aot_eager")}  # tracing only: the tests check the plumbing, not speed
    quick = size == "quick"
    tanh_cfgs = ([(32, 256, 0.5), (32, 256, 0.9)] if quick else
                 [(b, d, c) for b in (32, 64) for d in (256, 512) for c in (0.5, 0.9)])
    def case(problem, batch: int, dtype: torch.dtype, tol: float, max_iter: int) -> dict:
        return {"problem": problem, "batch": batch, "dtype": dtype, "tol": tol, "max_iter": max_iter}

    forward = [case(tanh_deq(d, c), b, f32, 1e-4, 50) for b, d, c in tanh_cfgs]
    forward += [case(tanh_deq(256, [0.3, 0.6, 0.9, 0.95]), 32, f32, 1e-4, 50), case(h_equation(), 1, f64, 1e-8, 100)]
    if not quick:
        forward += [case(h_equation(), 8, f64, 1e-8, 100), case(bratu(lam=[0.5, 1.0, 2.0, 3.0]), 8, f64, 1e-8, 100),
                    case(broyden_tridiagonal(), 8, f64, 1e-8, 100)]
    training = [{"batch": 32, "dim": 256, "contraction": 0.9, "f_tol": 1e-4, "b_tol": 1e-5, "max_iter": 50}]
    if not quick:
        training += [{"batch": 64, "dim": 512, "contraction": 0.9, "f_tol": 1e-4, "b_tol": 1e-5, "max_iter": 50}]
    return {"forward": forward, "forward_repeats": 9 if quick else 21, "training": training,
            "training_steps": 10 if quick else 30, "scipy_tols": [6e-6] if quick else [6e-6, 1e-8, 1e-10],
            "scipy_repeats": 3 if quick else 11, "scipy_problems": None,
            "memory": ([3, 7, 15] if quick else [3, 7, 15, 30, 50], 32, 256),
            "overhead": ([32] if quick else [32, 64], [256] if quick else [256, 512, 1024], 5 if quick else 15),
            "update": ([32], [256] if quick else [256, 512, 1024], 5 if quick else 11, "inductor")}


def run(ctx: RunContext, bar) -> SuiteResult:
    """Run the chosen sections at ``ctx.size``; ``bar`` advances once per section."""
    only = ctx.overrides.get("only") or DEFAULT_SECTIONS
    unknown = set(only) - set(SECTIONS)
    if unknown:
        raise UsageError(f"--only takes letters of {''.join(SECTIONS)}; got {''.join(sorted(unknown))}")
    plan = _plan(ctx.size)
    measure = {
        "forward": lambda: bench_forward(plan["forward"], repeats=plan["forward_repeats"]),
        "training": lambda: [bench_training(cfg, steps=plan["training_steps"]) for cfg in plan["training"]],
        "scipy": lambda: bench_scipy(plan["scipy_tols"], plan["scipy_repeats"], plan["scipy_problems"]),
        "memory": lambda: bench_memory(*plan["memory"]),
        "overhead": lambda: bench_overhead(*plan["overhead"]),
        "update": lambda: bench_update(*plan["update"][:3], backend=plan["update"][3]),
    }
    result = SuiteResult("solver-perf", {"sections": only})
    bar.reset(total=len(only))
    for letter in only:
        name = SECTIONS[letter]
        bar.set_postfix_str(name)
        if name in ("forward", "training") and get_deq is None:
            result.notes.append(f"torchdeq is not installed: section ({letter}) {name} skipped")
        elif name == "scipy" and sopt is None:
            result.notes.append("scipy is not installed: section (c) skipped")
        else:
            result.tables[name] = rows_table(DESCRIPTIONS[name], measure[name]())
        bar.update()
    return result
