"""Suite ``deq-classifier``: which backward mode should I use? Cost of a training step and accuracy after a budget,
on a tiny tanh DEQ classifier: ``python -m benchmarks deq-classifier [--quick] [--out DIR] [--seeds N] [--steps N]``.

Method: docs/benchmarks/methods.md#deq-classifier
"""

from __future__ import annotations

import statistics
import time
import warnings
from types import MappingProxyType
from typing import Callable, Optional

import torch

import solvers
from benchmarks.suites.common import Option, Counter, RunContext, SuiteResult, Table, by_size, count_vjps, tail_mean

try:  # optional peer
    from torchdeq import get_deq
except Exception:  # pragma: no cover
    get_deq = None

__all__ = ["run", "OPTIONS", "TABLES", "MODES", "make_task", "DEQClassifier"]

CLASSES = 4
# mode name -> backward mode of solvers (torchdeq's is added when installed)
MODES: MappingProxyType[str, Callable[[], solvers.BackwardMode]] = MappingProxyType({
    "implicit (broyden adjoint)": lambda: solvers.Implicit(),
    "implicit (gmres adjoint)": lambda: solvers.Implicit(solver="gmres"),
    "unrolled": lambda: solvers.Unrolled(),
    "onestep": lambda: solvers.OneStep(),
    "neumann(5)": lambda: solvers.Neumann(terms=5),
    "phantom(5, 0.5)": lambda: solvers.Phantom(steps=5, damping=0.5),
})
TORCHDEQ = "torchdeq get_deq(ift=True)"
COLUMNS = ("mode", "seeds", "steps", "ms_per_step", "f_evals_per_step", "vjps_per_step", "grad_cosine_step0",
           "train_loss_last", "test_loss", "test_accuracy", "test_accuracy_min", "test_accuracy_max")
TABLES = MappingProxyType({"modes": COLUMNS})
SIZES = MappingProxyType({  # input dim, hidden dim, train, test, batch, steps, default seeds
    "tiny": (8, 16, 128, 128, 32, 4, 1), "quick": (16, 32, 1024, 1024, 64, 60, 1),
    "full": (16, 64, 4096, 4096, 64, 1500, 3)})


def make_task(inputs: int, train: int, test: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test): Gaussian inputs labelled by a fixed random tanh teacher."""
    gen = torch.Generator().manual_seed(1000 + seed)
    hidden = torch.randn(inputs, 32, generator=gen) / inputs ** 0.5
    out = torch.randn(32, CLASSES, generator=gen) / 32 ** 0.5
    x = torch.randn(train + test, inputs, generator=gen)
    y = (torch.tanh(3.0 * x @ hidden) @ out).argmax(dim=1)
    return x[:train], y[:train], x[train:], y[train:]


class DEQClassifier(torch.nn.Module):
    """``z* = tanh(z* W + U x)``, logits ``V z*``; ``W`` is rescaled to spectral norm <= ``contraction``."""

    def __init__(self, inputs: int, dim: int, contraction: float = 0.9, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(0.5 * torch.randn(dim, dim, generator=gen) / dim ** 0.5)
        self.U = torch.nn.Linear(inputs, dim)
        self.V = torch.nn.Linear(dim, CLASSES)
        with torch.no_grad():
            for p in (*self.U.parameters(), *self.V.parameters()):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
        self.contraction = contraction
        self.dim = dim

    def weight(self) -> torch.Tensor:
        norm = torch.linalg.matrix_norm(self.W, ord=2)
        return self.W * torch.clamp(self.contraction / norm, max=1.0)

    def layer(self, inject: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        w = self.weight()
        return lambda z: torch.tanh(z @ w + inject)


def _train(mode: str, seed: int, sizes: tuple, task: tuple[torch.Tensor, ...], exact: Optional[torch.Tensor]
           ) -> dict:
    inputs, dim, train, _, batch, steps, _ = sizes
    x_train, y_train, x_test, y_test = task
    model = DEQClassifier(inputs, dim, seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    if mode == TORCHDEQ:
        deq = get_deq(core="sliced", ift=True, f_solver="anderson", b_solver="broyden", f_max_iter=30, b_max_iter=50,
                      f_tol=1e-4, b_tol=1e-6, f_stop_mode="abs", b_stop_mode="rel")
        deq.train()

        def solve(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor) -> torch.Tensor:
            return deq(f, z0)[0][-1]
    else:
        backward = MODES[mode]()

        def solve(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor) -> torch.Tensor:
            return solvers.fixed_point(f, z0, forward=solvers.Anderson(), backward=backward, tol=1e-4, max_iter=30,
                                       on_fail="ignore")[0]

    order = torch.Generator().manual_seed(seed)
    times, f_evals, vjps, losses, cosine = [], [], [], [], None
    for i in range(steps):
        idx = torch.randint(0, train, (batch,), generator=order)
        with count_vjps() as counted:
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            f = Counter(model.layer(model.U(x_train[idx])))
            loss = torch.nn.functional.cross_entropy(model.V(solve(f, torch.zeros(batch, dim))), y_train[idx])
            loss.backward()
            if i == 0 and exact is not None:
                g = torch.cat([p.grad.flatten() for p in model.parameters()])
                cosine = float(g @ exact / (g.norm() * exact.norm()).clamp_min(1e-30))
            opt.step()
            times.append(time.perf_counter() - start)
        f_evals.append(f.calls)
        vjps.append(counted["calls"])
        losses.append(float(loss.detach()))
    with torch.no_grad():
        z, _ = solvers.fixed_point(model.layer(model.U(x_test)), torch.zeros(x_test.shape[0], dim),
                                   forward=solvers.Anderson(), tol=1e-5, max_iter=100, on_fail="ignore")
        logits = model.V(z)
    return {"ms": 1e3 * statistics.median(times[1:] or times), "f_evals": statistics.median(f_evals),
            "vjps": statistics.median(vjps), "cosine": cosine, "train_loss": tail_mean(losses),
            "test_loss": float(torch.nn.functional.cross_entropy(logits, y_test)),
            "test_accuracy": float((logits.argmax(dim=1) == y_test).float().mean())}


def _exact_gradient(seed: int, sizes: tuple, task: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The first step's gradient with a GMRES adjoint to 1e-10 (the reference of the cosines)."""
    inputs, dim, train, _, batch, _, _ = sizes
    model = DEQClassifier(inputs, dim, seed=seed)
    idx = torch.randint(0, train, (batch,), generator=torch.Generator().manual_seed(seed))
    f = model.layer(model.U(task[0][idx]))
    z, _ = solvers.fixed_point(f, torch.zeros(batch, dim), forward=solvers.Anderson(), tol=1e-4, max_iter=30,
                               backward=solvers.Implicit(solver="gmres", tol=1e-10, max_iter=200), on_fail="ignore")
    torch.nn.functional.cross_entropy(model.V(z), task[1][idx]).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


OPTIONS = (Option("--steps", "training steps per mode (default 1500; quick 60)", at_least=1, type=int),)


def run(ctx: RunContext, bar) -> SuiteResult:
    """Train every mode on every seed; ``bar`` advances once per (mode, seed)."""
    sizes = SIZES[by_size(ctx.size, "tiny", "quick", "full")]
    if ctx.overrides.get("steps") is not None:
        sizes = (*sizes[:5], ctx.overrides["steps"], sizes[6])
    inputs, dim, train, test, batch, steps, default_seeds = sizes
    seeds = list(range(ctx.seeds or default_seeds))
    modes = [*MODES, *([TORCHDEQ] if get_deq is not None else [])]
    result = SuiteResult("deq-classifier", {"inputs": inputs, "dim": dim, "classes": CLASSES, "train": train,
                                            "test": test, "batch": batch, "steps": steps, "seeds": seeds,
                                            "lr": 3e-3, "forward": "Anderson, abs tol 1e-4, max 30"})
    if get_deq is None:
        result.notes.append("torchdeq is not installed: its row is left out")
    tab = result.tables["modes"] = Table(
        f"Tanh DEQ classifier (d={dim}, W rescaled to spectral norm <= 0.9), {inputs} Gaussian inputs, {CLASSES} "
        f"classes from a random teacher; {train} training / {test} test samples; batch {batch}, Adam 3e-3, {steps} "
        f"steps per mode from the same initialisation and batches, seeds {seeds}. ms_per_step = median wall time of "
        "a training step (forward Anderson + backward + Adam), f_evals / vjps = its median evaluations of the layer "
        "and vector-Jacobian products; grad_cosine_step0 = cosine of the first gradient to the exact implicit one "
        "(GMRES adjoint to 1e-10); test_* after the budget (fixed point solved to 1e-5), accuracy mean (min, max) "
        f"over seeds; chance is about {1 / CLASSES:.2f}.", COLUMNS)
    bar.reset(total=len(modes) * len(seeds))
    per_mode: dict[str, list[dict]] = {m: [] for m in modes}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-converged adjoints are part of what is measured
        for seed in seeds:
            task = make_task(inputs, train, test, seed)
            exact = _exact_gradient(seed, sizes, task)
            for mode in modes:
                bar.set_postfix_str(f"{mode} seed {seed}")
                per_mode[mode].append(_train(mode, seed, sizes, task, exact))
                bar.update()
    for mode, runs in per_mode.items():
        acc = [r["test_accuracy"] for r in runs]

        def mean(key: str, runs: list[dict] = runs) -> float:
            return statistics.fmean(r[key] for r in runs)

        tab.add(mode=mode, seeds=len(runs), steps=steps, ms_per_step=mean("ms"), f_evals_per_step=mean("f_evals"),
                vjps_per_step=mean("vjps"), grad_cosine_step0=mean("cosine"), train_loss_last=mean("train_loss"),
                test_loss=mean("test_loss"), test_accuracy=statistics.fmean(acc), test_accuracy_min=min(acc),
                test_accuracy_max=max(acc))
    return result
