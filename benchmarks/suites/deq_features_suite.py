"""Suite ``deq-features``: what compaction of converged samples, weights once per solve and ``compile=`` cost or
save: ``python -m benchmarks deq-features [--quick] [--out DIR] [--threads N] [--repeats N]``.

Method: docs/benchmarks/methods.md#deq-features
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Callable

import torch

import solvers
from benchmarks.suites.common import Option, RunContext, SuiteResult, interleaved_ms, rows_table

__all__ = ["run", "OPTIONS", "TABLES", "mixed_batch", "compaction", "weight_caching", "compile_speedup"]

TABLES = MappingProxyType({"compaction": None, "weight_caching": None, "compile": None})


def mixed_batch(batch: int = 32, dim: int = 512, fast: float = 0.03, slow: float = 0.86, seed: int = 0
                ) -> tuple[Callable[..., torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
    """f(z, x, c) = tanh(c * (z Q) + x) with Q orthogonal and small x (so tanh is nearly linear and sample i
    contracts by about c_i): the first half of the batch has c = ``fast`` (about 3 plain-iteration steps to
    tol 1e-4), the rest c = ``slow`` (about 60)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
    x = 0.1 * torch.randn(batch, dim, generator=gen)
    c = torch.tensor([fast] * (batch // 2) + [slow] * (batch - batch // 2)).unsqueeze(1)

    def f(z: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.tanh(c * (z @ q) + x)

    return f, x, c, torch.zeros(batch, dim)


def compaction(forward: str, dim: int, repeats: int, tol: float = 1e-4) -> dict:
    """(a): a no-grad solve of the mixed batch with and without compaction, and of its slow half alone."""
    f, x, c, z0 = mixed_batch(dim=dim)
    half = x.shape[0] // 2

    def solve(z0: torch.Tensor, x: torch.Tensor, c: torch.Tensor, compact: bool) -> solvers.SolveInfo:
        with torch.no_grad():
            return solvers.fixed_point(f, z0, args=(x, c), forward=forward, tol=tol, max_iter=200,
                                       compact=compact, on_fail="ignore")[1]

    info = solve(z0, x, c, False)
    steps = (info.trace > tol).sum(dim=0) + 1  # steps each sample took to reach tol
    slow_z0, slow_x, slow_c = z0[half:], x[half:], c[half:]
    ms = interleaved_ms({
        "all evaluated": lambda: solve(z0, x, c, False),
        "compact": lambda: solve(z0, x, c, True),
        "slow half alone": lambda: solve(slow_z0, slow_x, slow_c, False),
    }, repeats, warmup=True)
    return {
        "forward": forward, "batch": x.shape[0], "dim": dim, "nfe": info.nfe,
        "fast_steps": float(steps[:half].float().mean()), "slow_steps": float(steps[half:].float().mean()),
        "ms_all": ms["all evaluated"], "ms_compact": ms["compact"], "ms_slow_alone": ms["slow half alone"],
        "compact_over_slow_alone": ms["compact"] / ms["slow half alone"],
        "all_over_slow_alone": ms["all evaluated"] / ms["slow half alone"],
    }


def weight_caching(kind: str, batch: int, dim: int, iters: int, repeats: int) -> dict:
    """(b): solves and training steps of a DEQ step whose weight is parametrized by ``kind``, the weight
    computed once per solve or at every call of f."""
    x = torch.randn(batch, dim)
    torch.manual_seed(0)
    layer = getattr(torch.nn.utils.parametrizations, kind)(torch.nn.Linear(dim, dim))
    scale = 0.5  # ||W||_2 is 1 under spectral_norm and about 1.15 for a default Linear: the map contracts

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(scale * layer(z) + x)

    def train_step(cache: bool) -> None:
        layer.zero_grad(set_to_none=True)
        z, _ = solvers.fixed_point(f, torch.zeros_like(x), backward="onestep", tol=None, max_iter=iters,
                                   cache_weights=cache)
        z.pow(2).mean().backward()

    def no_grad_solve(cache: bool) -> None:
        with torch.no_grad():
            solvers.fixed_point(f, torch.zeros_like(x), tol=None, max_iter=iters, cache_weights=cache)

    ms = interleaved_ms({
        "train cached": lambda: train_step(True), "train per call": lambda: train_step(False),
        "solve cached": lambda: no_grad_solve(True), "solve per call": lambda: no_grad_solve(False),
    }, repeats, warmup=True)
    return {
        "norm": kind, "batch": batch, "dim": dim, "nfe": iters,
        "ms_per_f_solve_cached": ms["solve cached"] / iters,
        "ms_per_f_solve_per_call": ms["solve per call"] / iters,
        "ms_train_cached": ms["train cached"], "ms_train_per_call": ms["train per call"],
        "speedup_solve": ms["solve per call"] / ms["solve cached"],
        "speedup_train": ms["train per call"] / ms["train cached"],
    }


def compile_speedup(variant: str, batch: int, resolution: int, repeats: int, backend: str) -> list[dict]:
    """(c): eager vs compiled slot-attention solve, for the slot-attention step alone and a full training step."""
    from deqslots.slot_attention.autoencoder import SlotAutoencoder
    from deqslots.slot_attention.config import config_for

    torch.manual_seed(0)
    model = SlotAutoencoder(config_for("cpu-small", variant=variant, resolution=resolution))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.rand(batch, 3, resolution, resolution)
    with torch.no_grad():
        feats = model.encode(images)
    sa = model.slot_attention
    noise = sa.initial_slots(batch).detach()
    compiled = solvers.Compile(backend=backend)

    def slot_step(option) -> None:
        sa.compile = option
        sa.zero_grad(set_to_none=True)
        slots = sa(feats, slots=noise.clone().requires_grad_(variant == "vanilla"))
        slots.pow(2).mean().backward()

    def train_step(option) -> None:
        sa.compile = option
        optimizer.zero_grad(set_to_none=True)
        model.loss(images, step=10_000).backward()  # past any guidance: the plain reconstruction loss
        optimizer.step()

    rows = []
    for name, step in (("slot-attention step", slot_step), ("training step", train_step)):
        torch._dynamo.reset()
        began = time.perf_counter()
        step(compiled)  # the first call compiles
        compile_s = time.perf_counter() - began
        cases = {"eager": lambda step=step: step(False), "compiled": lambda step=step: step(compiled)}
        ms = interleaved_ms(cases, repeats, warmup=True)
        rows.append({"what": name, "variant": variant, "iters": sa.iters, "batch": batch, "resolution": resolution,
                     "backend": backend, "compile_s": compile_s, "ms_eager": ms["eager"],
                     "ms_compiled": ms["compiled"], "speedup": ms["eager"] / ms["compiled"]})
    sa.compile = False
    torch._dynamo.reset()
    return rows


OPTIONS = (
    Option("--repeats", "timed repeats per case (default 15; quick 5; tiny 2)", at_least=1, type=int),
    Option("--compile-backend", "torch.compile backend of section (c) (default inductor; quick and tiny: aot_eager, "
           "which only traces, to stay fast)"),
)


def run(ctx: RunContext, bar) -> SuiteResult:
    """Both sections at ``ctx.size``; ``bar`` advances once per section."""
    repeats = ctx.overrides.get("repeats") or {"tiny": 2, "quick": 5}.get(ctx.size, 15)
    tiny = ctx.size == "tiny"
    dim = 32 if tiny else 256 if ctx.size == "quick" else 512
    result = SuiteResult("deq-features", {"repeats": repeats, "dim": dim})
    bar.reset(total=3)
    result.tables["compaction"] = rows_table(
        "(a) compaction: B=32, 16 samples fast (c=0.03, about 3 steps) and 16 slow (c=0.86, about 60); ms per "
        "no-grad solve (tol 1e-4) with every sample evaluated at every step (ms_all), with compact=True "
        "(ms_compact), and of the slow half alone (ms_slow_alone, the target); fast_steps / slow_steps = mean steps "
        "each half took.", [compaction(forward, dim, repeats) for forward in ("iterate", "anderson")])
    bar.update()
    result.tables["weight_caching"] = rows_table(
        "(b) parametrized weight (spectral_norm / weight_norm) computed once per solve (cache_weights=True) vs at "
        "every call of f: ms per evaluation of f in a no-grad solve, ms of a training step (forward + onestep "
        "backward), and the speed-ups.", [weight_caching(kind, 8 if tiny else 32, dim, 5 if tiny else 30, repeats)
                                          for kind in ("spectral_norm", "weight_norm")])
    bar.update()
    backend = ctx.overrides.get("compile_backend") or ("inductor" if ctx.size not in ("tiny", "quick") else "aot_eager")
    batch, resolution = (2, 16) if tiny else (16, 32)
    rows = [row for variant in (("IN",) if tiny else ("vanilla", "IN"))
            for row in compile_speedup(variant, batch, resolution, repeats, backend)]
    result.tables["compile"] = rows_table(
        f"(c) fixed_point(..., compile=solvers.Compile(backend={backend!r})) in the slot attention of the cpu-small "
        f"autoencoder (batch {batch}, {resolution}x{resolution}, T = its iterations; vanilla and IN iterate a fixed "
        "number of times, so the whole loop is one graph): ms of the slot-attention step alone (forward + backward "
        "from fixed encoder features and initial slots) and of a full training step (forward + backward + Adam), "
        "eager vs compiled, medians of interleaved repeats after the first compiled call (compile_s, which includes "
        "that call).", rows)
    bar.update()
    return result
