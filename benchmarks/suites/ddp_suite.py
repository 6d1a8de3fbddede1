"""Suite ``ddp``: multi-process training speed (torchrun + DistributedDataParallel), checkpoint write time and size:
``python -m benchmarks ddp [--steps 40] [--batch-size 32] [--variant IN] [--repeats 7] [--out DIR]``.

Method: docs/benchmarks/methods.md#ddp
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

import torch

from benchmarks.suites.common import (Option, RunContext, SuiteResult, Table, UsageError, by_size, interleaved,
                                      read_metrics)
from deqslots.training.checkpoint import load_checkpoint, save_atomic

__all__ = ["run", "OPTIONS", "TABLES", "train_speed", "checkpoint_cost"]

SPEED_COLUMNS = ("device", "processes", "threads_per_process", "steps", "timed_steps", "steps_per_s", "images_per_s",
                 "speedup_vs_1x1", "wall_s")
CHECKPOINT_COLUMNS = ("bytes", "parameters", "repeats", "save_ms_median", "save_ms_min", "save_ms_max",
                      "load_ms_median")
TABLES = MappingProxyType({"speed": SPEED_COLUMNS, "checkpoint": CHECKPOINT_COLUMNS})


def train_speed(out: Path, processes: int, threads: int, device: str, steps: int, batch_size: int, variant: str,
                warmup: int) -> dict:
    """Train through the CLI (torchrun when ``processes > 1``) and return steps/s after ``warmup`` steps."""
    shutil.rmtree(out, ignore_errors=True)
    train_args = ["train", "--config", "cpu-small", "--data", "clevr-mirror", "--variant", variant,
                  "--batch-size", str(batch_size), "--steps", str(steps), "--eval-every", str(steps),
                  "--eval-batches", "1", "--checkpoint-every", str(steps), "--threads", str(threads),
                  "--device", device, "--no-progress", "--out", str(out)]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "deqslots", *train_args]
    else:
        command = [sys.executable, "-m", "deqslots", *train_args]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    began = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    elapsed = read_metrics(out / "metrics.csv")["elapsed_s"]
    timed = elapsed[-1] - elapsed[warmup - 1]
    return {"device": device, "processes": processes, "threads_per_process": threads, "steps": steps,
            "timed_steps": steps - warmup, "steps_per_s": round((steps - warmup) / timed, 3),
            "images_per_s": round(batch_size * (steps - warmup) / timed, 1), "wall_s": round(wall, 1)}


def checkpoint_cost(checkpoint: Path, repeats: int) -> dict:
    """Median time of ``save_atomic`` (fsync included) and ``load_checkpoint`` of a real checkpoint."""
    state = load_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory(dir=checkpoint.parent) as tmp:
        path = Path(tmp) / "checkpoint.pt"
        # the first round saves before it loads; later rounds read the file the round before wrote
        times = interleaved({"save": lambda: save_atomic(state, path), "load": lambda: load_checkpoint(path)}, repeats)
        size = path.stat().st_size
    saves, loads = times["save"], times["load"]
    params = sum(v.numel() for v in state["model"].values())
    return {"bytes": size, "parameters": params, "repeats": repeats,
            "save_ms_median": round(1000 * statistics.median(saves), 2),
            "save_ms_min": round(1000 * min(saves), 2), "save_ms_max": round(1000 * max(saves), 2),
            "load_ms_median": round(1000 * statistics.median(loads), 2)}


OPTIONS = (
    Option("--steps", "training steps per layout (default 40; quick 6)", type=int),
    Option("--warmup", "steps left out of the timing (default 5; quick 2)", type=int),
    Option("--batch-size", "global batch (default 32)", type=int),
    Option("--variant", "slot-attention variant (default IN)"),
    Option("--repeats", "checkpoint writes (default 7)", type=int),
)


def run(ctx: RunContext, bar) -> SuiteResult:
    """Train each layout through the CLI, then time the checkpoint; ``bar`` advances once per layout."""
    o = ctx.overrides
    steps = o.get("steps") or by_size(ctx.size, 3, 6, 40)
    warmup = o.get("warmup") or by_size(ctx.size, 1, 2, 5)
    batch = o.get("batch_size") or (4 if ctx.size == "tiny" else 32)
    variant = o.get("variant") or "IN"
    repeats = o.get("repeats") or (2 if ctx.size == "tiny" else 7)
    if not 0 < warmup < steps:
        raise UsageError("--warmup must be between 1 and --steps - 1")
    if batch < 2 or repeats < 1:
        raise UsageError("--batch-size must be >= 2 (two processes split it) and --repeats >= 1")
    # tiny (the test suite's size) starts one process only: torchrun itself is tested in tests/deqslots
    layouts = {"tiny": [(1, 1, "cpu")], "quick": [(1, 1, "cpu"), (2, 1, "cpu")]}.get(
        ctx.size, [(1, 1, "cpu"), (1, 2, "cpu"), (2, 1, "cpu")])
    if torch.cuda.is_available() and ctx.size != "tiny":
        layouts.append((1, 1, "cuda"))
        if torch.cuda.device_count() > 1:
            layouts.append((torch.cuda.device_count(), 1, "cuda"))
    result = SuiteResult("ddp", {"variant": variant, "batch_size": batch, "steps": steps, "warmup": warmup})
    speed = result.tables["speed"] = Table(
        f"`deqslots train` of cpu-small (variant {variant}, clevr-mirror 32x32, global batch {batch}), {steps} steps "
        f"of which the first {warmup} are left out: steps/s from metrics.csv's elapsed_s between the warm-up's end and "
        "the last step (start-up, process-group set-up and the final evaluation excluded; data generation included, "
        "each rank generating its share). Several processes: torchrun --standalone, gloo on the CPU, nccl on GPUs. "
        "wall_s = the whole command.", SPEED_COLUMNS)
    bar.reset(total=len(layouts) + 1)
    base = None
    for processes, threads, device in layouts:
        bar.set_postfix_str(f"{device} {processes}x{threads}")
        row = train_speed(ctx.out / f"run_{device}_{processes}x{threads}", processes, threads, device, steps, batch,
                          variant, warmup)
        base = base or row["steps_per_s"]
        speed.add(**row, speedup_vs_1x1=row["steps_per_s"] / base)
        bar.update()
    result.tables["checkpoint"] = Table(
        "The checkpoint of the 1-process run (model + Adam + RNG + config) written again with save_atomic (fsync "
        "included) and read back with load_checkpoint; times over the repeats.", CHECKPOINT_COLUMNS)
    result.tables["checkpoint"].add(**checkpoint_cost(ctx.out / "run_cpu_1x1" / "checkpoint.pt", repeats))
    bar.update()
    return result
