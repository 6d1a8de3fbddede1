"""Training of the slot-attention autoencoder, readable top to bottom.

``deqslots train ...`` builds a :class:`TrainConfig` from its flags and calls :func:`train`.
Everything a run writes lands in ``config.out``: metrics.csv, checkpoint.pt, loss_curve.png, slots.png.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from .autoencoder import SlotAutoencoder, config_for
from .batches import BatchStream
from .checkpoint import load_checkpoint, save_atomic
from .evaluate import evaluate
from .figures import plot_loss_curves, plot_slot_grid
from .metrics import mse_per_pixel
from .schedule import learning_rate
from .slot_attention import VARIANTS

__all__ = ["TrainConfig", "train", "build_model", "METRIC_COLUMNS"]

METRIC_COLUMNS = ["step", "loss", "lr", "grad_norm", "elapsed_s", "val_mse", "val_mse_sum", "val_fg_ari"]
MODELS = ("slot-attention",)


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in the checkpoint).

    Attributes:
        model: "slot-attention".
        variant: "vanilla" | "IN" | "BN" | "BB" | "IB".
        data: a procedural data set (shapes, clevr-mirror, stacks), folder:PATH or hdf5:PATH.
        config: named architecture (see ``deqslots.CONFIGS``).
        resolution, iters, num_slots: override the named architecture's values when set.
        steps: optimisation steps in total (a resumed run continues up to it).
        batch_size, seed: as usual; the seed fixes initialisation, data and slot noise.
        lr: peak Adam learning rate (Slot Attention: 4e-4).
        warmup_steps: linear warm-up; None = min(10000, steps // 10); 0 = off.
        decay_steps: lr halves every ``decay_steps``; None = 100000 (Slot Attention); 0 = off.
        grad_clip: clip the global gradient norm to this; None = off.
        eval_every, eval_batches: periodic validation (MSE, FG-ARI) on fixed batches.
        checkpoint_every: steps between atomic checkpoints (and one at the end).
        out: run folder. resume: continue from ``out/checkpoint.pt``.
        tensorboard: also log to TensorBoard (needs the tensorboard package).
        threads: torch CPU threads (None = torch's default).
        progress: show a tqdm bar.
    """

    model: str = "slot-attention"
    variant: str = "IN"
    data: str = "clevr-mirror"
    config: str = "cpu-small"
    resolution: Optional[int] = None
    iters: Optional[int] = None
    num_slots: Optional[int] = None
    steps: int = 1000
    batch_size: int = 32
    seed: int = 0
    lr: float = 4e-4
    warmup_steps: Optional[int] = None
    decay_steps: Optional[int] = None
    grad_clip: Optional[float] = None
    eval_every: int = 200
    eval_batches: int = 4
    checkpoint_every: int = 200
    out: str = "runs/train"
    resume: bool = False
    tensorboard: bool = False
    threads: Optional[int] = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}; got {self.model!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {self.variant!r}")
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None (off); got {self.grad_clip}")

    @property
    def warmup(self) -> int:
        return min(10_000, self.steps // 10) if self.warmup_steps is None else self.warmup_steps

    @property
    def decay(self) -> int:
        return 100_000 if self.decay_steps is None else self.decay_steps

    def model_config(self):
        changes = {"variant": self.variant}
        for name in ("resolution", "iters", "num_slots"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        return config_for(self.config, **changes)


def build_model(config: TrainConfig) -> SlotAutoencoder:
    return SlotAutoencoder(config.model_config())


def _same_run(saved: dict, config: TrainConfig) -> list[str]:
    """Fields that define the run and differ between a checkpoint and the requested config."""
    defining = ("model", "variant", "data", "config", "resolution", "iters", "num_slots", "batch_size", "seed",
                "lr", "warmup_steps", "decay_steps", "grad_clip")
    now = dataclasses.asdict(config)
    return [f"{k}: checkpoint {saved.get(k)!r} vs now {now[k]!r}" for k in defining if saved.get(k) != now[k]]


def _open_metrics(path: Path, keep_until: Optional[int]) -> None:
    """Start metrics.csv, or on resume drop rows logged after the checkpoint (they will be redone)."""
    rows = []
    if keep_until is not None and path.exists():
        with open(path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= keep_until]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def train(config: TrainConfig) -> dict:
    """Train (or resume) a run; returns the final validation metrics and timing."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.csv"
    if config.threads:
        torch.set_num_threads(config.threads)
    if ckpt_path.exists() and not config.resume:
        raise FileExistsError(
            f"{out} already holds a run (checkpoint.pt); pass --resume to continue it or choose another --out"
        )

    # Model, optimiser and data. The seed fixes the initial weights; data depends only on (seed, step).
    torch.manual_seed(config.seed)
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    res = model.config.resolution
    train_data = BatchStream(config.data, "train", res, config.batch_size, config.seed)
    val_data = BatchStream(config.data, "val", res, config.batch_size, config.seed)

    start = 0
    if config.resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        differences = _same_run(state["train_config"], config)
        if differences:
            raise ValueError("--resume with different settings than the checkpoint: " + "; ".join(differences))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start = int(state["step"])
    _open_metrics(metrics_path, keep_until=start if start else None)
    writer = _tensorboard(out) if config.tensorboard else None

    def save(step: int) -> None:
        save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                     "rng": torch.get_rng_state(), "train_config": dataclasses.asdict(config),
                     "model_config": dataclasses.asdict(model.config), "format": 1}, ckpt_path)

    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not config.progress,
               desc=f"{config.variant} {config.data}", dynamic_ncols=True)
    began = time.perf_counter()
    last_eval: dict = {}
    with open(metrics_path, "a", newline="") as handle:
        log = csv.DictWriter(handle, METRIC_COLUMNS)
        for step in bar:
            lr = learning_rate(step, config.lr, config.warmup, 0.5, config.decay)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images = train_data.batch(step)["image"]
            loss = mse_per_pixel(model(images)["recon"], images)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at step {step}; the last checkpoint in {out} is intact. Try "
                    "--grad-clip 1.0, a warm-up, a lower --lr, or an implicit variant (IN)."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or math.inf)
            optimizer.step()

            row = {"step": step + 1, "loss": f"{loss.item():.6g}", "lr": f"{lr:.6g}",
                   "grad_norm": f"{float(grad_norm):.6g}", "elapsed_s": f"{time.perf_counter() - began:.3f}"}
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                last_eval = evaluate(model, val_data, config.eval_batches, seed=config.seed)
                row.update(val_mse=f"{last_eval['mse']:.6g}", val_mse_sum=f"{last_eval['mse_sum']:.6g}",
                           val_fg_ari=f"{last_eval['fg_ari']:.6g}")
            log.writerow(row)
            if writer is not None:
                for key in ("loss", "lr", "grad_norm", "val_mse", "val_fg_ari"):
                    if key in row:
                        writer.add_scalar(key, float(row[key]), step + 1)
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
                handle.flush()
                save(step + 1)
            bar.set_postfix(loss=f"{loss.item():.4f}", ari=f"{last_eval.get('fg_ari', float('nan')):.3f}")
    if writer is not None:
        writer.close()

    elapsed = time.perf_counter() - began
    final = last_eval or evaluate(model, val_data, config.eval_batches, seed=config.seed)
    write_figures(model, val_data, metrics_path, out, config.seed)
    summary = {"steps": config.steps, "trained_steps": config.steps - start, "seconds": round(elapsed, 2),
               "steps_per_s": round((config.steps - start) / elapsed, 3) if elapsed > 0 else None, **final}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


@torch.no_grad()
def write_figures(model: SlotAutoencoder, data: BatchStream, metrics_path: Path, out: Path, seed: int) -> None:
    """loss_curve.png from metrics.csv and slots.png (input, reconstruction, per-slot masks)."""
    plot_loss_curves({"train loss": metrics_path}, out / "loss_curve.png")
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        images = data.batch(0)["image"][:4]
        result = model(images)
    model.train(was_training)
    plot_slot_grid(images, result["recon"], result["masks"], result["rgb"], out / "slots.png")


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard") from err
    return SummaryWriter(str(out / "tensorboard"))
