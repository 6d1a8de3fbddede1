"""Multi-process training speed (torchrun + DistributedDataParallel) and checkpoint write time and size.

    python -m benchmarks.ddp_perf [--steps 40] [--batch-size 32] [--variant IN] [--repeats 7] [--out DIR]

Trains the `cpu-small` slot-attention autoencoder (32x32 clevr-mirror, the CLI's defaults) through the real
``deqslots train`` command and reports training steps/s for:
- 1 process, 1 thread; 1 process, 2 threads; 2 processes x 1 thread (``torchrun --nproc_per_node=2``,
  gloo) on the CPU;
- 1 process on the GPU, and one process per GPU when there are several, when CUDA is available.
Steps/s come from metrics.csv's ``elapsed_s`` between the end of the warm-up steps and the last step, so
start-up, process-group set-up and the final evaluation are excluded; data generation is included (each
rank generates only its share). Then the checkpoint the 1-process run wrote is written again with
``save_atomic`` ``--repeats`` times (median time, file size) and read back with ``load_checkpoint``.
The 1-minute load average (``uptime``) is recorded before and after, since other jobs may share the
machine. Writes DIR/results.json and DIR/report.md (default runs/bench/ddp_perf).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from deqslots.checkpoint import load_checkpoint, save_atomic

__all__ = ["main", "train_speed", "checkpoint_cost"]


def _load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


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
    with open(out / "metrics.csv", newline="") as handle:
        elapsed = [float(row["elapsed_s"]) for row in csv.DictReader(handle)]
    timed = elapsed[-1] - elapsed[warmup - 1]
    return {"processes": processes, "threads_per_process": threads, "device": device, "steps": steps,
            "timed_steps": steps - warmup, "steps_per_s": round((steps - warmup) / timed, 3),
            "images_per_s": round(batch_size * (steps - warmup) / timed, 1), "wall_s": round(wall, 1)}


def checkpoint_cost(checkpoint: Path, repeats: int) -> dict:
    """Median time of ``save_atomic`` (fsync included) and ``load_checkpoint`` of a real checkpoint."""
    state = load_checkpoint(checkpoint)
    saves, loads = [], []
    with tempfile.TemporaryDirectory(dir=checkpoint.parent) as tmp:
        path = Path(tmp) / "checkpoint.pt"
        for _ in range(repeats):
            began = time.perf_counter()
            save_atomic(state, path)
            saves.append(time.perf_counter() - began)
            began = time.perf_counter()
            load_checkpoint(path)
            loads.append(time.perf_counter() - began)
        size = path.stat().st_size
    params = sum(v.numel() for v in state["model"].values())
    return {"bytes": size, "parameters": params, "repeats": repeats,
            "save_ms_median": round(1000 * statistics.median(saves), 2),
            "save_ms_min": round(1000 * min(saves), 2), "save_ms_max": round(1000 * max(saves), 2),
            "load_ms_median": round(1000 * statistics.median(loads), 2)}


def _report(results: dict) -> str:
    lines = [f"# Multi-process training and checkpoints ({results['command']})", "",
             f"torch {results['torch']}, {results['cpus']} CPUs, 1-min load average {results['load_before']} before, "
             f"{results['load_after']} after; variant {results['variant']}, batch {results['batch_size']} "
             f"(global), {results['steps']} steps ({results['warmup']} warm-up).", "",
             "| device | processes x threads | steps/s | images/s | speed-up vs 1 x 1 |", "|---|---|---|---|---|"]
    base = results["speed"][0]["steps_per_s"]
    for row in results["speed"]:
        lines.append(f"| {row['device']} | {row['processes']} x {row['threads_per_process']} | {row['steps_per_s']} | "
                     f"{row['images_per_s']} | {row['steps_per_s'] / base:.2f} |")
    c = results["checkpoint"]
    lines += ["", f"Checkpoint ({c['parameters']} parameters, model + Adam + RNG + config): {c['bytes'] / 1e6:.2f} MB; "
              f"save_atomic median {c['save_ms_median']} ms (min {c['save_ms_min']}, max {c['save_ms_max']}, "
              f"{c['repeats']} repeats, fsync included); load median {c['load_ms_median']} ms."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ddp_perf", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch")
    parser.add_argument("--variant", default="IN")
    parser.add_argument("--repeats", type=int, default=7, help="checkpoint writes")
    parser.add_argument("--out", default="runs/bench/ddp_perf")
    args = parser.parse_args(argv)
    if not 0 < args.warmup < args.steps:
        parser.error("--warmup must be between 1 and --steps - 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"command": "python -m benchmarks.ddp_perf " + " ".join(argv or sys.argv[1:]),
                     "torch": torch.__version__, "cpus": os.cpu_count(), "load_before": _load_average(),
                     "variant": args.variant, "batch_size": args.batch_size, "steps": args.steps,
                     "warmup": args.warmup, "speed": []}
    layouts = [(1, 1, "cpu"), (1, 2, "cpu"), (2, 1, "cpu")]
    if torch.cuda.is_available():
        layouts.append((1, 1, "cuda"))
        if torch.cuda.device_count() > 1:
            layouts.append((torch.cuda.device_count(), 1, "cuda"))
    for processes, threads, device in layouts:
        run = out / f"run_{device}_{processes}x{threads}"
        row = train_speed(run, processes, threads, device, args.steps, args.batch_size, args.variant, args.warmup)
        print(json.dumps(row), flush=True)
        results["speed"].append(row)
    results["checkpoint"] = checkpoint_cost(out / "run_cpu_1x1" / "checkpoint.pt", args.repeats)
    results["load_after"] = _load_average()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text(_report(results))
    print(_report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
