"""Faults during training: kill -9 at random moments (also mid-checkpoint) and Ctrl-C, then exact resume."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from deqslots.cli import main

ROOT = Path(__file__).resolve().parents[3]
STEPS = 300  # long enough that no interruption lands after the end, even with the fast cpu-small
ARGS = ["train", "--data", "shapes", "--resolution", "16", "--num-slots", "3", "--batch-size", "4",
        "--steps", str(STEPS), "--eval-every", "50", "--eval-batches", "1", "--checkpoint-every", "1",
        "--lr", "0.001", "--warmup-steps", "0", "--threads", "1", "--no-progress"]


def rows(run: Path) -> list[dict]:
    """metrics.csv without the wall-clock column (the only one allowed to differ between runs)."""
    with open(run / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in csv.DictReader(handle)]


def logged_steps(run: Path) -> int:
    try:
        return max(0, len((run / "metrics.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def start(run: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "deqslots", *ARGS, "--out", str(run), "--resume"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.001)
    return False


def checkpoint_step(run: Path) -> int:
    """The step of checkpoint.pt, loaded as resume loads it (weights_only=True); 0 if none yet."""
    path = run / "checkpoint.pt"
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)  # raises on a torn file
    assert set(state) >= {"model", "optimizer", "step", "rng", "train_config"}
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    return int(state["step"])


def test_sigkill_and_sigint_never_corrupt_the_checkpoint_and_resume_is_exact(tmp_path):
    """Four interruptions of one run, each followed by --resume: kill -9 while a checkpoint is being written,
    kill -9 at a random moment (twice) and Ctrl-C; the checkpoint always loads with weights_only=True, and
    the finished run logs exactly the rows (losses, gradient norms, validation metrics) of an uninterrupted
    one."""
    run = tmp_path / "interrupted"
    rng = random.Random(0)
    last = 0
    for how in ("kill-mid-write", "kill-random", "sigint", "kill-random"):
        # rows logged after the checkpoint by the killed process are dropped and redone on resume: wait for
        # a row beyond them, so the new process is training (its signal handlers installed)
        logged = logged_steps(run)
        proc = start(run)
        try:
            started = wait_for(lambda logged=logged: logged_steps(run) > logged, proc)
            assert started, proc.stderr.read() if proc.poll() else ""
            if how == "kill-mid-write":
                # save_atomic writes checkpoint.pt.XXXX.tmp, fsyncs and renames it: kill while that file exists
                caught = wait_for(lambda: any(p.suffix == ".tmp" for p in run.iterdir()), proc)
                proc.kill()
                assert caught, "never saw a checkpoint being written"
            elif how == "sigint":
                proc.send_signal(signal.SIGINT)
            else:
                time.sleep(rng.uniform(0.0, 0.3))
                proc.kill()
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if how == "sigint":
            assert proc.returncode == 128 + signal.SIGINT, err
            assert "stopped by SIGINT" in err and "--resume" in err
        else:
            assert proc.returncode == -signal.SIGKILL, err
        step = checkpoint_step(run)
        assert last <= step < STEPS and logged_steps(run) >= step
        if how == "sigint":
            assert logged_steps(run) == step  # the finished step was checkpointed before exiting
        last = step
    assert last > 0
    assert main([*ARGS, "--out", str(run), "--resume"]) == 0
    assert main([*ARGS, "--out", str(tmp_path / "straight")]) == 0
    resumed, straight = rows(run), rows(tmp_path / "straight")
    assert [int(r["step"]) for r in resumed] == list(range(1, STEPS + 1))
    assert resumed == straight
