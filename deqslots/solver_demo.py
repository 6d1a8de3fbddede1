"""A one-minute tour of the solvers library: forward solvers and backward modes on a tanh DEQ.

Run with ``deqslots demo``. Prints two tables; writes nothing.
"""

from __future__ import annotations

import time
from typing import Callable

import torch

import solvers

__all__ = ["run_solver_demo"]


def _tanh_deq(batch: int, dim: int, contraction: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, dim, generator=gen)
    w = (contraction * w / torch.linalg.matrix_norm(w, ord=2)).requires_grad_()
    x = torch.randn(batch, dim, generator=gen)
    return (lambda z: torch.tanh(z @ w.T + x)), torch.zeros(batch, dim), w


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def forward_table(batch: int = 32, dim: int = 256, contraction: float = 0.9, tol: float = 1e-4,
                  repeats: int = 5) -> str:
    """Forward solvers (ours and, when installed, torchdeq's) on the same problem and tolerance."""
    f, z0, _ = _tanh_deq(batch, dim, contraction)
    rows = []
    with torch.no_grad():
        for name in solvers.FORWARD_SOLVERS:
            _, info = solvers.fixed_point(f, z0, forward=name, backward="onestep", tol=tol, max_iter=100)
            t = _median_time(lambda name=name: solvers.fixed_point(f, z0, forward=name, backward="onestep", tol=tol,
                                                                   max_iter=100), repeats)
            rows.append([f"deqslots {name}", str(info.nfe), f"{t * 1e3:.2f}", f"{info.residual.max():.2e}",
                         str(bool(info.converged.all()))])
        rows += _torchdeq_rows(f, z0, tol, repeats)
    return _table(["solver", "f evals", "median ms", "max residual", "converged"], rows)


def _torchdeq_rows(f, z0, tol: float, repeats: int) -> list[list[str]]:
    try:
        from torchdeq.solver import get_solver
    except ImportError:
        return [["torchdeq (not installed)", "-", "-", "-", "-"]]
    rows = []
    for name, key in (("iterate", "fixed_point_iter"), ("anderson", "anderson"), ("broyden", "broyden")):
        solver = get_solver(key)
        calls = [0]

        def counted(z, calls=calls):
            calls[0] += 1
            return f(z)

        z, _, _ = solver(counted, z0, max_iter=100, tol=tol, stop_mode="abs")
        nfe = calls[0]
        res = torch.linalg.vector_norm(f(z) - z, dim=1).max()
        t = _median_time(lambda solver=solver: solver(f, z0, max_iter=100, tol=tol, stop_mode="abs"), repeats)
        rows.append([f"torchdeq {name}", str(nfe), f"{t * 1e3:.2f}", f"{res:.2e}", str(bool(res <= tol))])
    return rows


def backward_table(batch: int = 32, dim: int = 256, contraction: float = 0.9) -> str:
    """Each backward mode: time of one training step and cosine of its gradient to the exact one."""
    f, z0, w = _tanh_deq(batch, dim, contraction, seed=1)
    loss = lambda z: z.pow(2).sum()  # noqa: E731
    modes = [("unrolled", solvers.Unrolled()), ("implicit (broyden)", solvers.Implicit()),
             ("implicit (gmres)", solvers.Implicit(solver="gmres")), ("neumann(5)", solvers.Neumann(terms=5)),
             ("onestep", solvers.OneStep()), ("phantom(5, 0.5)", solvers.Phantom())]
    rows = []
    for label, mode in modes:
        forward = "iterate" if label == "unrolled" else "broyden"

        def step(forward=forward, mode=mode):
            z, _ = solvers.fixed_point(f, z0, forward=forward, backward=mode, tol=1e-5, max_iter=100)
            torch.autograd.grad(loss(z), [w])

        cosine = solvers.gradient_fidelity(f, z0, [w], loss, mode, forward=forward, tol=1e-5)
        rows.append([label, f"{_median_time(step, 3) * 1e3:.1f}", f"{cosine:.6f}"])
    return _table(["backward mode", "step ms", "cosine to exact gradient"], rows)


def run_solver_demo() -> None:
    """Print the forward-solver and backward-mode comparison tables."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print("Forward solves of z = tanh(W z + x), B=32, d=256, ||W||=0.9, tol 1e-4 (abs), CPU\n")
    print(forward_table())
    print("\nBackward modes on the same problem (loss = ||z*||^2; exact = implicit, GMRES to 1e-10)\n")
    print(backward_table())
