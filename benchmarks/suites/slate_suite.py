"""Suite ``slate``: generation with and without the key/value cache, training speed per variant, and implicit (IN)
against vanilla SLATE over several seeds at equal steps:
``python -m benchmarks slate [--quick] [--out DIR] [--steps N] [--seed-list 0,1,2] [--threads N]``.

Method: docs/benchmarks/methods.md#slate
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from types import MappingProxyType
from typing import Optional

import torch

from solvers import VARIANTS
from benchmarks.suites.common import (Option, RunContext, SuiteResult, Table, interleaved, mean_sd,
                                      read_metrics, seed_list, step_rates, tail_mean, train_run)
from deqslots import SLATE, slate_config_for
from deqslots.data.batches import BatchStream
from deqslots.training.checkpoint import load_checkpoint
from deqslots.data import generate_batch
from deqslots.slate.figures import plot_slate_grid
from deqslots.training.config import TrainConfig
from deqslots.training.loop import build_model

# CPU-scale recipe of the seed study (the same for both variants): SLATE's optimiser and schedules with
# larger learning rates than its 250k-step values, so a few hundred steps get somewhere.
STUDY = MappingProxyType(dict(model="slate", config="cpu-small", data="clevr-mirror", batch_size=16, lr=4e-4,
                              dvae_lr=1e-3, eval_batches=4))
RUN_COLUMNS = ("seed", "variant", "steps", "train_ce_tail", "ce", "mse_sum", "mse", "dvae_mse_sum", "fg_ari")
TABLES = MappingProxyType({
    "generation": ("architecture", "images", "tokens", "cached_s", "uncached_s", "speedup"),
    "speed": ("variant", "batch", "steps_per_s"),
    "study": RUN_COLUMNS,
    "study_summary": ("row", "train_ce_tail", "ce", "mse_sum", "lower_in_seeds"),
})
__all__ = ["run", "OPTIONS", "TABLES", "generation_times", "steps_per_second", "seed_study", "figure"]


def generation_times(arch: str, batch: int, repeats: int) -> dict[str, float]:
    """Seconds to reconstruct ``batch`` images through the slots, with and without the KV cache."""
    torch.manual_seed(0)
    model = SLATE(slate_config_for(arch, variant="IN")).eval()
    images, _ = generate_batch("clevr-mirror", range(batch), "val", model.config.resolution, 0)
    model.reconstruct(images[:2])  # one-off allocations

    def seconds(use_cache: bool) -> float:  # the repeats of one setting in a row
        calls = interleaved({"reconstruct": lambda: model.reconstruct(images, use_cache=use_cache)}, repeats)
        return statistics.median(calls["reconstruct"])

    cached, uncached = seconds(True), seconds(False)
    return {"cached_s": cached, "uncached_s": uncached, "speedup": uncached / cached, "batch": batch,
            "tokens": model.config.num_tokens}


def steps_per_second(variant: str, batch: int, timed: int) -> float:
    """Median training steps/s of one SLATE variant after two untimed steps (one-off allocation costs)."""
    torch.manual_seed(0)
    model = build_model(TrainConfig(**{**STUDY, "variant": variant, "batch_size": batch}))
    groups = model.parameter_groups()
    opt = torch.optim.Adam([{"params": groups["dvae"], "lr": 1e-3}, {"params": groups["main"], "lr": 1e-4}])
    images, _ = generate_batch("clevr-mirror", range(batch), "train", 64, 0)
    return step_rates({variant: (model, opt)}, lambda m: m(images, tau=1.0)["loss"], timed, torch.device("cpu"),
                      warmup=2, before_step=lambda m: torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0, math.inf)
                      )[variant]


def seed_study(out: Path, steps: int, seeds: list[int], eval_batches: Optional[int] = None) -> dict:
    """vanilla vs IN, same seeds and data, ``steps`` each; per-run summaries."""
    runs = {}
    for seed in seeds:
        for variant in ("vanilla", "IN"):
            run_dir = out / f"{variant}_seed{seed}"
            recipe = {**STUDY, **({"eval_batches": eval_batches} if eval_batches else {})}
            summary = train_run(TrainConfig(**recipe, variant=variant, seed=seed, steps=steps, eval_every=steps,
                                            checkpoint_every=steps, out=str(run_dir), progress=False))
            summary["train_ce_tail"] = tail_mean(read_metrics(run_dir / "metrics.csv")["ce"])
            runs[f"{variant}/{seed}"] = summary
            print(f"seed {seed} {variant:7s}: train CE(last 10%) {summary['train_ce_tail']:.1f}  val CE "
                  f"{summary['ce']:.1f}  MSE through slots {summary['mse_sum']:.1f} (per pixel {summary['mse']:.5f})"
                  f"  dVAE {summary['dvae_mse_sum']:.1f}  FG-ARI {summary['fg_ari']:.3f}  "
                  f"{summary['steps_per_s']:.2f} steps/s", flush=True)
    return runs


def figure(out: Path, seed: int) -> Path:
    """Figure 4 layout: ground truth, then IN and vanilla reconstructions through the slots with masks."""
    panels, images = [], None
    for variant, label in (("IN", "implicit (IN)"), ("vanilla", "vanilla")):
        state = load_checkpoint(out / f"{variant}_seed{seed}" / "checkpoint.pt")
        model = build_model(TrainConfig(**{**state["train_config"], "resume": True}))
        model.load_state_dict(state["model"])
        images = BatchStream("clevr-mirror", "test", 64, 6, seed).batch(0)["image"]
        torch.manual_seed(seed)
        result = model.reconstruct(images)
        panels.append((label, result["recon"], result["masks"]))
    return plot_slate_grid(images, panels, out / "figure4.png", rows=6)


OPTIONS = (
    Option("--steps", "training steps per study run (default 800; quick 10)", at_least=1, type=int),
    Option("--seed-list", "comma-separated study seeds (default 0,1,2; quick 0); --seeds N means 0..N-1"),
)


def run(ctx: RunContext, bar) -> SuiteResult:
    """Generation, speed, then the seed study; ``bar`` advances once per part."""
    tiny, quick = ctx.size == "tiny", ctx.size == "quick"
    steps = ctx.overrides.get("steps") or (2 if tiny else 10 if quick else 800)
    seeds = seed_list(ctx, [0] if tiny or quick else [0, 1, 2])
    bar.reset(total=3)
    result = SuiteResult("slate", {"steps": steps, "seeds": seeds, "recipe": dict(STUDY)})
    gen = result.tables["generation"] = Table(
        "Seconds to reconstruct a batch through the slot bottleneck (generate the 256 tokens from the slots, then "
        "decode) with and without the key/value cache (median of repeats), variant IN.", TABLES["generation"])
    sizes = [("cpu-small", 2 if tiny else 4 if quick else 16, 1 if tiny or quick else 3)]
    if not (tiny or quick):
        sizes.append(("paper-64", 4, 1))
    for arch, batch, repeats in sizes:
        g = generation_times(arch, batch, repeats)
        gen.add(architecture=arch, images=g["batch"], tokens=g["tokens"], cached_s=g["cached_s"],
                uncached_s=g["uncached_s"], speedup=g["speedup"])
    bar.update()
    batch = 2 if tiny else 16
    speed = result.tables["speed"] = Table(
        f"Training steps/s of cpu-small SLATE, batch {batch} (forward + backward + Adam, data excluded; median after "
        "two untimed steps).", TABLES["speed"])
    for variant in (("vanilla", "IN") if tiny or quick else VARIANTS):
        timed = 1 if tiny else 2 if quick else 10
        speed.add(variant=variant, batch=batch, steps_per_s=steps_per_second(variant, batch, timed))
    bar.update()
    began = time.perf_counter()
    runs = seed_study(ctx.out, steps, seeds, eval_batches=1 if tiny or quick else None)
    figure(ctx.out, seeds[0])
    result.plots.append("figure4.png")
    study = result.tables["study"] = Table(
        f"vanilla vs IN trained with `deqslots train` on clevr-mirror 64x64, {steps} steps, same seeds, data and "
        f"steps; batch {STUDY['batch_size']}, Adam lr {STUDY['lr']} (warm-up {max(1, steps // 10)} steps), dVAE lr "
        f"{STUDY['dvae_lr']}, inf-norm clipping 1.0, temperature 1.0 -> 0.1 over {min(30000, steps // 2)} steps; 3 "
        "slot-attention iterations. CE is summed over the 256 tokens (the paper's unit); train_ce_tail = mean over "
        "the last 10% of steps, ce = teacher-forced on validation images, on which the MSE through the slots is "
        "measured too (mse_sum per image, images in [0, 1]; mse per pixel). fg_ari from the attention masks. "
        f"Whole study: {time.perf_counter() - began:.0f} s.", RUN_COLUMNS)
    for seed in seeds:
        for variant in ("vanilla", "IN"):
            x = runs[f"{variant}/{seed}"]
            study.add(seed=seed, variant=variant, steps=steps, **{k: x[k] for k in RUN_COLUMNS[3:]})
    get = lambda v, k: [runs[f"{v}/{seed}"][k] for seed in seeds]  # noqa: E731
    summary = result.tables["study_summary"] = Table(
        "Mean ± sd over seeds, and the paired difference IN - vanilla with the number of seeds where IN is lower.",
        TABLES["study_summary"])
    keys = ("train_ce_tail", "ce", "mse_sum")
    for v in ("vanilla", "IN"):
        summary.add(row=v, **{k: mean_sd(get(v, k)) for k in keys}, lower_in_seeds=None)
    diffs = {k: [a - b for a, b in zip(get("IN", k), get("vanilla", k))] for k in keys}
    summary.add(row="IN - vanilla (paired)", **{k: mean_sd(diffs[k]) for k in keys},
                lower_in_seeds=", ".join(f"{k} {sum(d < 0 for d in diffs[k])}/{len(seeds)}" for k in keys))
    bar.update()
    return result
