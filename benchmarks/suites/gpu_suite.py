"""Suite ``gpu``: what only a GPU can measure, in one command that fits in 8 minutes on one GPU (a CPU dry-run
without one): ``python -m benchmarks gpu [--quick] [--out DIR] [--parts PART ...]``.

Method: docs/benchmarks/methods.md#gpu
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Optional

import torch

import solvers
from benchmarks.suites.common import (FORWARD_SOLVERS, Budget, Option, RunContext, SuiteResult, Table, autoencoder,
                                      f_only, saved_bytes, step_rates, sync, tail_mean, time_call)
from deqslots import SLATE, slate_config_for
from deqslots.data.batches import BatchStream
from deqslots.evaluation.metrics import mse_per_pixel

__all__ = ["run", "OPTIONS", "default_device", "TABLES", "PARTS", "BUDGETS"]

PARTS = ("cuda_tests", "solver_overhead", "slot_attention_speed", "compile", "slate_speed", "peak_memory",
         "vanilla_vs_in")
# seconds per part; full: the GPU run (about 7 minutes in all), quick: a look, tiny: the CPU dry-run
BUDGETS = MappingProxyType({
    # 405 s: the rest of the 8 minutes is for start-up, model building and a compile that overruns its share
    "full": MappingProxyType({"cuda_tests": 80, "solver_overhead": 25, "slot_attention_speed": 80, "compile": 60,
                              "slate_speed": 35, "peak_memory": 25, "vanilla_vs_in": 100}),
    "quick": MappingProxyType({"cuda_tests": 40, "solver_overhead": 8, "slot_attention_speed": 20, "compile": 30,
                               "slate_speed": 10, "peak_memory": 8, "vanilla_vs_in": 20}),
    "tiny": MappingProxyType({"cuda_tests": 60, "solver_overhead": 2, "slot_attention_speed": 2, "compile": 2,
                              "slate_speed": 2, "peak_memory": 2, "vanilla_vs_in": 2}),
})
PRECISIONS = ("fp32", "bf16")
TABLES = MappingProxyType({
    "cuda_tests": ("paths", "selection", "mode", "passed", "failed", "skipped", "errors", "collected", "returncode",
                   "seconds", "timed_out"),
    "solver_overhead": ("solver", "tol", "B", "d", "nfe", "solve_ms", "f_ms", "overhead", "host_syncs"),
    "slot_attention_speed": ("architecture", "variant", "precision", "batch", "steps_timed", "steps_per_s",
                             "images_per_s"),
    "compile": ("architecture", "variant", "compiled", "compile_s", "steps_timed", "steps_per_s"),
    "slate_speed": ("architecture", "variant", "precision", "batch", "steps_timed", "steps_per_s"),
    "peak_memory": ("architecture", "variant", "iters", "batch", "measure", "bytes", "mib"),
    "vanilla_vs_in": ("variant", "steps", "loss_first", "loss_last", "loss_min", "grad_norm_median", "grad_norm_max",
                      "nonfinite_steps", "diverged_at"),
    "vanilla_vs_in_curve": ("variant", "step", "loss", "grad_norm"),
})


def default_device() -> str:
    """``cuda`` where there is one: this suite is for the GPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


OPTIONS = (Option("--parts", "parts to run (default: all)", nargs="+", choices=PARTS),
           Option("--batch-size", "training batch of the speed parts (default 32)", at_least=1, type=int))


def _autocast(device: torch.device, precision: str) -> Any:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _architectures(dry: bool) -> dict[str, tuple[str, int]]:
    """Name in the tables -> (config, resolution); the dry-run trains small stand-ins on the same code path."""
    if dry:
        return {"paper-64": ("cpu-small", 32), "paper-128": ("cpu-small", 32)}
    return {"paper-64": ("paper-64", 64), "paper-128": ("paper-128", 128)}


def _images(resolution: int, batch: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    return BatchStream("clevr-mirror", "train", resolution, batch, seed).batch(0)["image"].to(device)


def _cuda_tests(ctx: RunContext, budget: Budget, dry: bool, result: SuiteResult, batch: int) -> None:
    root = Path(__file__).resolve().parents[2]
    if not (root / "tests").is_dir():
        result.notes.append("cuda_tests: no tests/ folder next to benchmarks/ (an installed copy?); skipped")
        return
    # Only files that mention CUDA can hold a test that `-k cuda` selects; collecting the whole tree costs
    # ~17 s of imports on a 2-core CPU for the same selection.
    paths = ["tests/solvers/test_bad_input.py"] if ctx.size == "tiny" else sorted(
        str(path.relative_to(root)) for path in (root / "tests").rglob("test_*.py")
        if "benchmarks" not in path.parts and "cuda" in path.read_text(errors="replace").lower())
    mode = "collect-only (no GPU)" if dry else "run"
    # tests/benchmarks is left out: this suite's own tests must not run from inside it
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-k", "cuda",
               "--ignore=tests/benchmarks", *paths]
    if dry:
        command.append("--collect-only")
    began = Budget(0)
    try:
        proc = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=max(5.0, budget.left()))
        out, code, timed_out = proc.stdout + proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as err:
        out = (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or "")
        code, timed_out = None, True
    (ctx.out / "cuda_tests.txt").write_text(out)
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors", "collected")}
    summary = out.strip().splitlines()[-1] if out.strip() else ""  # "3 passed, 5 skipped, 900 deselected in 9s"
    for number, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)\b", summary):
        counts["errors" if word.startswith("error") else word] += int(number)
    selected = re.search(r"(\d+)(?:/\d+)? tests? collected", out)  # collect-only: "5/1234 tests collected"
    counts["collected"] = int(selected.group(1)) if selected else sum(counts.values())
    result.tables["cuda_tests"] = Table(
        "The CUDA test subset (`pytest -k cuda`), its summary counts; the whole output is in cuda_tests.txt. "
        "Without a GPU the tests are only collected (they would skip).", TABLES["cuda_tests"])
    result.tables["cuda_tests"].add(paths=" ".join(paths), selection="-k cuda", mode=mode, **counts,
                                    returncode=code, seconds=-began.left(), timed_out=timed_out)
    if timed_out or (code not in (0, 5) and not dry):
        result.notes.append(f"cuda_tests: pytest {'ran out of its budget' if timed_out else f'exited {code}'}; "
                            "see cuda_tests.txt")


def _count_syncs(fn: Callable[[], Any], device: torch.device) -> Optional[int]:
    """Host synchronisations during ``fn()`` (CUDA's sync debug mode warns at each); None on the CPU."""
    if device.type != "cuda":
        return None
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchroniz" in str(w.message) for w in caught)


def _solver_overhead(ctx: RunContext, budget: Budget, dry: bool, result: SuiteResult, batch: int) -> None:
    device, (batch, dim) = ctx.device, ((8, 64) if dry else (256, 1024))  # its own size, not --batch-size
    gen = torch.Generator().manual_seed(0)
    w = (0.9 * torch.linalg.qr(torch.randn(dim, dim, generator=gen))[0]).to(device)
    x = (0.5 * torch.randn(batch, dim, generator=gen)).to(device)

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ w + x)

    z0 = torch.zeros(batch, dim, device=device)
    tab = result.tables["solver_overhead"] = Table(
        f"tanh DEQ f(z) = tanh(z W + x), W = 0.9 x orthogonal, B={batch}, d={dim}, float32, no grad, at most 30 "
        "evaluations. solve_ms = median solve time (synchronised); f_ms = median time of one f call in a loop of "
        "nfe calls; overhead = solve_ms / (nfe x f_ms) (1 = the solver costs nothing beyond f); host_syncs = "
        "synchronising CUDA calls during one solve (torch.cuda.set_sync_debug_mode; - on the CPU). tol=None runs "
        "no convergence test; tol=1e-4 tests every step.", TABLES["solver_overhead"])
    repeats = 2 if dry else 7
    for name in ("iterate", "anderson", "broyden"):
        for tol in (None, 1e-4):
            if tab.rows and budget.over() and not dry:
                result.notes.append(f"solver_overhead: budget spent before {name} tol={tol}")
                return
            solver = FORWARD_SOLVERS[name]()

            def solve(solver: solvers.ForwardSolver = solver, tol: Optional[float] = tol) -> solvers.SolveInfo:
                with torch.no_grad():
                    # unrolled under no_grad: the forward solve alone (no extra application of f)
                    return solvers.fixed_point(f, z0, forward=solver, backward="unrolled", tol=tol, max_iter=30,
                                               on_fail="ignore")[1]

            info = solve()  # warm-up (and the nfe)
            solve_s = sorted(time_call(solve, device)[0] for _ in range(repeats))[repeats // 2]

            f_evaluations = functools.partial(f_only, f, z0, info.nfe)
            f_s = sorted(time_call(f_evaluations, device)[0] for _ in range(repeats))[repeats // 2] / max(1, info.nfe)
            tab.add(solver=name, tol=tol, B=batch, d=dim, nfe=info.nfe, solve_ms=1e3 * solve_s, f_ms=1e3 * f_s,
                    overhead=solve_s / (max(1, info.nfe) * f_s), host_syncs=_count_syncs(solve, device))


def _slot_attention_speed(ctx: RunContext, budget: Budget, dry: bool, result: SuiteResult, batch: int) -> None:
    archs = _architectures(dry)
    variants = ("vanilla", "IN") if dry else solvers.VARIANTS
    cases = [(name, v, p) for name in archs for p in PRECISIONS for v in variants]
    if dry:  # one case per variant and per precision covers every code path
        cases = [("paper-64", "vanilla", "fp32"), ("paper-64", "IN", "bf16")]
    tab = result.tables["slot_attention_speed"] = Table(
        f"Training steps/s of the slot-attention autoencoder (forward + per-pixel MSE + backward + Adam; data on the "
        f"device beforehand), batch {batch}, after one warm-up step; bf16 = the forward under torch.autocast "
        "(bfloat16), as `deqslots train --precision bf16`. Each case gets an equal share of the part's budget."
        + (" Dry-run: cpu-small at 32x32 stands in for both paper architectures." if dry else ""),
        TABLES["slot_attention_speed"])
    for i, (name, variant, precision) in enumerate(cases):
        if i and budget.over() and not dry:  # the dry-run checks every case, whatever the machine's speed
            result.notes.append(f"slot_attention_speed: budget spent; {len(cases) - i} case(s) not measured")
            return
        config, resolution = archs[name]
        images = _images(resolution, batch, ctx.device)
        model, opt = autoencoder(config, ctx.device, resolution=resolution, variant=variant)

        def loss(m: torch.nn.Module, p: str = precision, images: torch.Tensor = images) -> torch.Tensor:
            with _autocast(ctx.device, p):
                return mse_per_pixel(m(images)["recon"].float(), images)

        share, counts = Budget(budget.left() / (len(cases) - i)), {}
        rate = step_rates({"m": (model, opt)}, loss, 50, ctx.device, share, counts)["m"]
        tab.add(architecture=name, variant=variant, precision=precision, batch=batch,
                steps_timed=counts["m"], steps_per_s=rate, images_per_s=rate * batch)


def _compile(ctx: RunContext, budget: Budget, dry: bool, result: SuiteResult, batch: int) -> None:
    config, resolution = _architectures(dry)["paper-64"]
    images = _images(resolution, batch, ctx.device)
    tab = result.tables["compile"] = Table(
        f"paper-64 IN, fp32, batch {batch}: steps/s without and with torch.compile (default mode) of the model; "
        "compile_s = the first compiled step (compilation included)." + (" Dry-run: cpu-small 32x32." if dry else ""),
        TABLES["compile"])
    # the dry-run traces with dynamo but skips inductor's code generation (minutes of C++ on a small CPU)
    backend = "eager" if dry else "inductor"
    for compiled in (False, True):
        if tab.rows and budget.over() and not dry:
            result.notes.append("compile: budget spent before the compiled run")
            return
        model, opt = autoencoder(config, ctx.device, resolution=resolution, variant="IN")
        net: Any = model
        compile_s = None
        if compiled:
            try:
                net = torch.compile(model, backend=backend)
                compile_s, _ = time_call(lambda net=net: mse_per_pixel(net(images)["recon"], images).backward(),
                                         ctx.device)
            except Exception as err:  # a backend missing on this machine is a finding, not a crash
                result.notes.append(f"compile: torch.compile failed: {type(err).__name__}: {str(err)[:300]}")
                return
        share, counts = Budget(budget.left() / (2 if not compiled else 1)), {}
        rate = step_rates({"m": (net, opt)}, lambda m: mse_per_pixel(m(images)["recon"], images), 50, ctx.device,
                          share, counts)["m"]
        tab.add(architecture="paper-64", variant="IN", compiled=f"yes ({backend})" if compiled else "no",
                compile_s=compile_s, steps_timed=counts["m"], steps_per_s=rate)


def _slate_speed(ctx: RunContext, budget: Budget, dry: bool, result: SuiteResult, batch: int) -> None:
    batch = 2 if dry else 16  # its own size, not --batch-size
    cases = [("vanilla", "fp32"), ("IN", "bf16")] if dry else [(v, p) for p in PRECISIONS for v in ("vanilla", "IN")]
    tab = result.tables["slate_speed"] = Table(
        f"SLATE training steps/s (dVAE + transformer decoder + slot attention, loss = model(images)['loss'], Adam), "
        f"batch {batch}, tau 1.0; bf16 = forward under autocast." + (" Dry-run: cpu-small at 16x16." if dry else ""),
        TABLES["slate_speed"])
    for i, (variant, precision) in enumerate(cases):
        if i and budget.over() and not dry:
            result.notes.append(f"slate_speed: budget spent; {len(cases) - i} case(s) not measured")
            return
        torch.manual_seed(0)
        config = slate_config_for("cpu-small", resolution=16, variant=variant) if dry else \
            slate_config_for("paper-64", variant=variant)
        model = SLATE(config).to(ctx.device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        images = _images(config.resolution, batch, ctx.device)

        def loss(m: torch.nn.Module, p: str = precision, images: torch.Tensor = images) -> torch.Tensor:
            with _autocast(ctx.device, p):
                return m(images, tau=1.0)["loss"].float()

        counts: dict[str, int] = {}
        rate = step_rates({"m": (model, opt)}, loss, 50, ctx.device, Budget(budget.left() / (len(cases) - i)),
                          counts)["m"]
        tab.add(architecture="paper-64", variant=variant, precision=precision, batch=batch, steps_timed=counts["m"],
                steps_per_s=rate)


def _peak_memory(ctx: RunContext, budget: Budget, dry: bool, result: SuiteResult, batch: int) -> None:
    config, resolution = _architectures(dry)["paper-64"]
    images = _images(resolution, batch, ctx.device)
    cuda = ctx.device.type == "cuda"
    tab = result.tables["peak_memory"] = Table(
        f"One training step of paper-64 (batch {batch}) as the slot-attention iterations grow: on a GPU the peak "
        "of torch.cuda.max_memory_allocated during forward + backward above what the model and batch hold "
        "(measure 'cuda peak'); on the CPU the bytes autograd saves for backward (measure 'autograd saved'). "
        "Unrolled (vanilla) grows with the iterations, implicit (IN) should not.", TABLES["peak_memory"])
    for variant in ("vanilla", "IN"):
        for iters in ((1, 3) if dry else (1, 3, 7, 15, 30)):
            if tab.rows and budget.over() and not dry:
                result.notes.append("peak_memory: budget spent before every case was measured")
                return
            model, _ = autoencoder(config, ctx.device, resolution=resolution, variant=variant, iters=iters)
            if cuda:
                sync(ctx.device)
                torch.cuda.reset_peak_memory_stats(ctx.device)
                base = torch.cuda.memory_allocated(ctx.device)
                mse_per_pixel(model(images)["recon"], images).backward()
                sync(ctx.device)
                nbytes = torch.cuda.max_memory_allocated(ctx.device) - base
            else:
                nbytes = saved_bytes(lambda model=model: mse_per_pixel(model(images)["recon"], images).reshape(1),
                                     exclude=tuple(model.parameters()) + (images,))[0]
            tab.add(architecture="paper-64", variant=variant, iters=iters, batch=batch,
                    measure="cuda peak" if cuda else "autograd saved", bytes=nbytes, mib=nbytes / 2**20)


def _vanilla_vs_in(ctx: RunContext, budget: Budget, dry: bool, result: SuiteResult, batch: int) -> None:
    config, resolution = _architectures(dry)["paper-64"]
    stream = BatchStream("clevr-mirror", "train", resolution, batch, 0)
    runs = {v: autoencoder(config, ctx.device, resolution=resolution, variant=v, iters=7) for v in ("vanilla", "IN")}
    for _, opt in runs.values():
        for group in opt.param_groups:
            group["lr"] = 4e-4
    warmup, log_every = 100, 1 if dry else 10
    curve = result.tables["vanilla_vs_in_curve"] = Table(
        "Loss and global gradient L2 norm (before any clipping; there is none) every few steps.",
        TABLES["vanilla_vs_in_curve"], in_report=False)
    history: dict[str, list[tuple[float, float]]] = {v: [] for v in runs}
    diverged: dict[str, Optional[int]] = {v: None for v in runs}
    step = 0
    while step < 2 if dry else (step == 0 or not budget.over()):
        images = stream.batch(step)["image"].to(ctx.device)
        for variant, (model, opt) in runs.items():
            if diverged[variant] is not None:
                continue
            for group in opt.param_groups:
                group["lr"] = 4e-4 * min(1.0, (step + 1) / warmup)
            loss = mse_per_pixel(model(images)["recon"], images)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf))
            value = float(loss.detach())
            if not (math.isfinite(value) and math.isfinite(norm)):
                diverged[variant] = step
            else:
                opt.step()
            history[variant].append((value, norm))
            if step % log_every == 0 or diverged[variant] == step:
                curve.add(variant=variant, step=step, loss=value, grad_norm=norm)
        step += 1
        if all(d is not None for d in diverged.values()):
            break
    tab = result.tables["vanilla_vs_in"] = Table(
        f"paper-64 at {resolution}x{resolution} on clevr-mirror, 7 slot-attention iterations, batch {batch}, Adam "
        f"4e-4 with a {warmup}-step linear warm-up, no gradient clipping, both variants from the same seed on the "
        "same batches, interleaved step by step until the part's budget was spent. loss_last = mean of the last 10% "
        "of steps; diverged_at = first step with a non-finite loss or gradient (training of that variant stops)."
        + (" Dry-run: cpu-small 32x32, 2 steps." if dry else ""), TABLES["vanilla_vs_in"])
    for variant, hist in history.items():
        losses = [v for v, _ in hist if math.isfinite(v)]
        norms = sorted(n for _, n in hist if math.isfinite(n))
        tab.add(variant=variant, steps=len(hist), loss_first=losses[0] if losses else None,
                loss_last=tail_mean(losses), loss_min=min(losses) if losses else None,
                grad_norm_median=norms[len(norms) // 2] if norms else None, grad_norm_max=norms[-1] if norms else None,
                nonfinite_steps=len(hist) - len(losses), diverged_at=diverged[variant])


# part -> its measurement(ctx, budget, dry, result, batch), which adds its table
MEASURES = MappingProxyType({"cuda_tests": _cuda_tests, "solver_overhead": _solver_overhead,
                             "slot_attention_speed": _slot_attention_speed, "compile": _compile,
                             "slate_speed": _slate_speed, "peak_memory": _peak_memory, "vanilla_vs_in": _vanilla_vs_in})


def run(ctx: RunContext, bar) -> SuiteResult:
    """Every part within its budget; on a machine without a GPU, the CPU dry-run at tiny sizes."""
    dry = ctx.device.type != "cuda"
    size = "tiny" if dry else ("quick" if ctx.size in ("quick", "tiny") else "full")
    batch = ctx.overrides.get("batch_size") or (2 if dry else 32)
    parts = ctx.overrides.get("parts") or list(PARTS)
    result = SuiteResult("gpu", {"dry_run": dry, "budget_size": size, "budgets_s": dict(BUDGETS[size]),
                                 "parts": parts, "batch_size": batch})
    if dry:
        why = ("torch.cuda.is_available() is False on this machine" if not torch.cuda.is_available()
               else "--device cpu was given")
        message = (f"gpu suite: no GPU in use ({why}; torch {torch.__version__}). Running the CPU dry-run at tiny "
                   "sizes: it checks that every part runs, its figures are not GPU figures.")
        print(message, file=sys.stderr, flush=True)
        result.notes.append(message)
    else:
        result.notes.append(f"GPU: {torch.cuda.get_device_name(ctx.device)}, CUDA {torch.version.cuda}")
    bar.reset(total=len(parts))
    for part in parts:
        bar.set_postfix_str(part)
        budget = Budget(BUDGETS[size][part])
        MEASURES[part](ctx, budget, dry, result, batch)
        result.settings.setdefault("part_seconds", {})[part] = round(BUDGETS[size][part] - budget.left(), 1)
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
        bar.update()
    for name in [n for n, t in result.tables.items() if not t.rows]:
        del result.tables[name]  # a part stopped by its budget before its first row
    return result
