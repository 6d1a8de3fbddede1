"""Suite ``backward``: cost (time, saved bytes) and gradient fidelity of each backward mode, and the Implicit mode
with each adjoint solver: ``python -m benchmarks backward [--quick | --full] [--out DIR]``.

Method: docs/benchmarks/methods.md#backward
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import torch

import solvers
from benchmarks.problems import _unit_spectral, slot_attention_map
from benchmarks.suites.common import (RunContext, SuiteResult, Table, median_ms, pyplot, save_figure, saved_bytes,
                                      time_call)

__all__ = ["run", "TABLES", "COST_COLUMNS", "FIDELITY_COLUMNS", "ADJOINT_COLUMNS"]

COST_COLUMNS = ("problem", "B", "D", "mode", "T", "saved_bytes", "saved_tensors", "saved_states", "ms_total",
                "ms_backward", "backward_nfe")
FIDELITY_COLUMNS = ("problem", "B", "D", "rho_max", "rho_median", "forward_residual", "mode", "k", "cosine")
ADJOINT_COLUMNS = ("problem", "B", "D", "rho_max", "solver", "tol", "max_iter", "vjps", "steps", "residual_max",
                   "converged_frac", "ms_backward", "cosine")
TABLES = MappingProxyType({"cost": COST_COLUMNS, "fidelity": FIDELITY_COLUMNS, "adjoint": ADJOINT_COLUMNS})


@dataclass(frozen=True)
class Sizes:
    """What one size of the suite measures."""

    iters: tuple[int, ...]
    ks: tuple[int, ...]
    contractions: tuple[float, ...]
    dim: int
    batch: int
    sa_inputs: int
    repeats: int
    adjoint_max_iter: int


SIZES = MappingProxyType({
    "tiny": Sizes((3, 7), (1, 3), (0.9,), 16, 4, 16, 1, 20),
    "quick": Sizes((3, 15, 50), (1, 3, 10), (0.5, 0.9), 256, 32, 64, 3, 50),
    "full": Sizes((3, 7, 15, 30, 50), (1, 2, 3, 5, 10, 20, 40), (0.5, 0.9, 0.97), 256, 32, 64, 7, 100),
})

Built = tuple[str, int, Callable, torch.Tensor, list]


def _tanh(dim: int, batch: int, c: float, dtype: torch.dtype, device: torch.device, scale: float = 1.0) -> Built:
    """``tanh(z W + x)``, ``||W||_2 = c``, ``x ~ N(0, scale^2)``.

    With unit-scale inputs tanh saturates and rho(J) is far below c; a small ``scale`` keeps tanh' near 1,
    so rho(J) approaches c (the hard case for truncated gradients).
    """
    gen = torch.Generator().manual_seed(0)
    w = (c * _unit_spectral(dim, gen, torch.float64)).to(dtype=dtype, device=device).requires_grad_()
    x = (scale * torch.randn(batch, dim, generator=gen, dtype=torch.float64)).to(dtype=dtype, device=device)
    x.requires_grad_()

    def f(z):
        return torch.tanh(torch.addmm(x, z, w))
    label = f"tanh d={dim} c={c}" + ("" if scale == 1.0 else f" x*{scale}")
    return label, dim, f, torch.zeros(batch, dim, dtype=dtype, device=device), [w, x]


def _slots(batch: int, inputs: int, dtype: torch.dtype, device: torch.device) -> Built:
    f, z0, params = slot_attention_map(batch, dtype, device, num_inputs=inputs, requires_grad=True)
    return f"slot-attention step N={inputs}", z0.shape[1], f, z0, params


MODES = (("unrolled", lambda: solvers.Unrolled()), ("implicit (broyden, 1e-6)", lambda: solvers.Implicit()),
         ("onestep", lambda: solvers.OneStep()), ("neumann(5)", lambda: solvers.Neumann(terms=5)),
         ("phantom(5, 0.5)", lambda: solvers.Phantom(steps=5, damping=0.5)))


def _cost(built: Built, sizes: Sizes, ctx: RunContext, tab: Table) -> None:
    name, dim, f, z0, params = built
    state_bytes = z0.numel() * z0.element_size()
    for label, make in MODES:
        for t in sizes.iters:
            mode = make()

            def forward(t=t, mode=mode):
                return solvers.fixed_point(f, z0, forward=solvers.Iterate(keep="last"), backward=mode, tol=None,
                                           max_iter=t, on_fail="ignore")

            nbytes, count = saved_bytes(lambda: forward()[0], exclude=tuple(params))  # also a warm-up run
            totals, backs, nfe = [], [], 0
            for _ in range(sizes.repeats):
                for p in params:
                    p.grad = None
                sec_f, (z, info) = time_call(forward, ctx.device)
                sec_b, _ = time_call(lambda z=z: z.square().sum().backward(), ctx.device)  # this repeat's z
                totals.append(sec_f + sec_b)
                backs.append(sec_b)
                nfe = info.backward.nfe if info.backward is not None else 0
            tab.add(problem=name, B=z0.shape[0], D=dim, mode=label, T=t, saved_bytes=nbytes, saved_tensors=count,
                    saved_states=nbytes / state_bytes, ms_total=median_ms(totals), ms_backward=median_ms(backs),
                    backward_nfe=nfe)


def _flat_grad(f, z0, params, mode, loss_weights) -> tuple[torch.Tensor, solvers.SolveInfo, float]:
    """Parameter gradient of ``sum(weights * z*)`` under ``mode``, the solve's info, seconds of the backward."""
    z, info = solvers.fixed_point(f, z0, forward="anderson", backward=mode, tol=1e-10, max_iter=300,
                                  on_fail="ignore")
    start = time.perf_counter()
    grads = torch.autograd.grad((z * loss_weights).sum(), params, allow_unused=True)
    seconds = time.perf_counter() - start
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
    return flat, info, seconds


def _accuracy(built: Built, sizes: Sizes, fid: Table, adj: Table) -> None:
    name, dim, f, z0, params = built
    gen = torch.Generator().manual_seed(5)
    weights = torch.randn(z0.shape, generator=gen, dtype=torch.float64).to(dtype=z0.dtype, device=z0.device)
    exact, info, _ = _flat_grad(f, z0, params, solvers.Implicit(solver="gmres", tol=1e-10, max_iter=500), weights)
    with torch.no_grad():
        z_star, _ = solvers.fixed_point(f, z0, forward="anderson", backward="onestep", tol=1e-10, max_iter=300,
                                        on_fail="ignore")
    rho = solvers.spectral_radius(f, z_star, iters=100, generator=torch.Generator().manual_seed(0)).cpu()
    common = dict(problem=name, B=z0.shape[0], D=dim, rho_max=float(rho.max()))
    residual = float(info.residual.max())
    for k in sizes.ks:
        modes = [("onestep", solvers.OneStep())] if k == 1 else []
        modes += [("neumann", solvers.Neumann(terms=k)), ("phantom(0.5)", solvers.Phantom(steps=k, damping=0.5))]
        for label, mode in modes:
            grad, _, _ = _flat_grad(f, z0, params, mode, weights)
            fid.add(**common, rho_median=float(rho.median()), forward_residual=residual, mode=label, k=k,
                    cosine=float(torch.nn.functional.cosine_similarity(grad, exact, dim=0)))
    for solver in solvers.ADJOINT_SOLVERS:
        mode = solvers.Implicit(solver=solver, tol=1e-6, max_iter=sizes.adjoint_max_iter)
        grad, info, seconds = _flat_grad(f, z0, params, mode, weights)
        b = info.backward
        adj.add(**common, solver=solver, tol=1e-6, max_iter=sizes.adjoint_max_iter, vjps=b.nfe, steps=b.steps,
                residual_max=float(b.residual.max()), converged_frac=float(b.converged.float().mean()),
                ms_backward=1e3 * seconds, cosine=float(torch.nn.functional.cosine_similarity(grad, exact, dim=0)))


def _plot(result: SuiteResult, out: Path) -> str:
    plt = pyplot()
    cost, fid = result.tables["cost"].rows, result.tables["fidelity"].rows
    problems = list(dict.fromkeys(r["problem"] for r in cost))
    fid_problems = list(dict.fromkeys(r["problem"] for r in fid))
    fig, axes = plt.subplots(2, max(2, len(fid_problems)), figsize=(4 * max(2, len(fid_problems)), 7), squeeze=False)
    panels = (("saved_bytes", "KiB saved for backward"), ("ms_total", "ms forward + backward"))
    for j, (key, label) in enumerate(panels):
        ax = axes[0][j]
        for prob, style in zip(problems, ("-", "--")):
            for mode, _ in MODES:
                pts = [(r["T"], r[key]) for r in cost if r["problem"] == prob and r["mode"] == mode]
                ax.plot([p[0] for p in pts], [p[1] / (1024 if key == "saved_bytes" else 1) for p in pts], style,
                        marker="o", ms=3, label=f"{mode} [{prob[:9]}]")
        ax.set_xlabel("forward iterations T")
        ax.set_ylabel(label)
        ax.set_yscale("log")
    axes[0][0].legend(fontsize=5)
    for ax in axes[0][2:]:
        ax.axis("off")
    for j, prob in enumerate(fid_problems):
        ax = axes[1][j]
        for mode in ("neumann", "phantom(0.5)"):
            pts = [(r["k"], r["cosine"]) for r in fid if r["problem"] == prob and r["mode"] == mode]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=mode)
        rho = next(r["rho_max"] for r in fid if r["problem"] == prob)
        ax.set_title(f"{prob} (rho {rho:.2f})", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("k")
        ax.set_ylabel("cosine to exact gradient")
        ax.legend(fontsize=7)
    for ax in axes[1][len(fid_problems):]:
        ax.axis("off")
    return save_figure(fig, out, "backward.png")


def run(ctx: RunContext, bar) -> SuiteResult:
    """Run the suite at ``ctx.size``; ``bar`` advances once per problem and table."""
    sizes = SIZES[ctx.size]
    result = SuiteResult("backward", {"iters": list(sizes.iters), "ks": list(sizes.ks),
                                      "contractions": list(sizes.contractions), "repeats": sizes.repeats})
    cost = result.tables["cost"] = Table(
        f"float32, B={sizes.batch}; forward = Iterate(keep='last') with tol=None for exactly T evaluations. "
        "saved_bytes = distinct storages packed by autograd's saved_tensors_hooks during the forward, leaving out "
        "the parameters (and for slot attention its keys/values); saved_states = that in units of one state "
        f"[B, D]; ms = median of {sizes.repeats} (forward + backward of sum(z^2)); backward_nfe = adjoint "
        "vector-Jacobian products (implicit, neumann).", COST_COLUMNS)
    fid = result.tables["fidelity"] = Table(
        "float64; forward Anderson to 1e-10; cosine between the mode's parameter gradient of a fixed random "
        "linear loss and the exact implicit gradient (GMRES adjoint, tol 1e-10). rho = spectral radius of "
        "J = df/dz at the fixed point (power iteration, per sample). phantom(k, 0.5) = k damped steps "
        "z <- 0.5 z + 0.5 f(z) from the fixed point; phantom(k, 1.0) would equal neumann(k) there.", FIDELITY_COLUMNS)
    adj = result.tables["adjoint"] = Table(
        "float64; Implicit(solver, tol=1e-6 relative) after the same forward; vjps = vector-Jacobian products of "
        "the adjoint solve; residual = what the mode reports in info.backward (relative); ms = the "
        "torch.autograd.grad call; cosine to the GMRES-1e-10 gradient.", ADJOINT_COLUMNS)
    f32, f64 = torch.float32, torch.float64
    jobs = [("cost", lambda: _tanh(sizes.dim, sizes.batch, 0.9, f32, ctx.device)),
            ("cost", lambda: _slots(sizes.batch, sizes.sa_inputs, f32, ctx.device))]
    jobs += [("accuracy", (lambda c=c: _tanh(sizes.dim, sizes.batch, c, f64, ctx.device))) for c in sizes.contractions]
    if ctx.size != "tiny":
        jobs += [("accuracy", lambda: _tanh(sizes.dim, sizes.batch, max(sizes.contractions), f64, ctx.device, 0.1))]
    jobs += [("accuracy", lambda: _slots(max(1, sizes.batch // 4), sizes.sa_inputs, f64, ctx.device))]
    bar.reset(total=len(jobs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", solvers.ConvergenceWarning)
        for kind, build in jobs:
            built = build()
            bar.set_postfix_str(f"{kind} {built[0]}")
            if kind == "cost":
                _cost(built, sizes, ctx, cost)
            else:
                _accuracy(built, sizes, fid, adj)
            bar.update()
    result.plots.append(_plot(result, ctx.out))
    return result
