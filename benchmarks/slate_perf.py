"""SLATE on a CPU: generation with and without the key/value cache, training speed per variant, and
implicit (IN) against vanilla SLATE over several seeds at equal steps.

    python -m benchmarks.slate_perf [--quick] [--out DIR] [--steps N] [--seeds 0,1,2] [--threads N]

Measures, on this machine's CPU, with the `cpu-small` SLATE (64x64 images -> 16x16 = 256 tokens,
vocabulary 128, d_model 64, 2 blocks, 7 slots of 64):
- time to reconstruct a batch through the slot bottleneck (generate 256 tokens from the slots, then decode)
  with and without the cache (median of repeats; the paper-64 architecture too unless --quick);
- training steps/s of each variant (median of timed steps after warm-up; data generation excluded);
- the science at CPU scale: vanilla and IN trained with `deqslots.train` on clevr-mirror 64x64 with the
  same seeds, data and steps; final token cross-entropy (training, last 10% of steps; validation, teacher
  forcing) and reconstruction MSE through the slots on 64 validation images, per seed, with the paired
  difference. Reported as measured, whichever way it comes out.
Writes DIR/results.json, DIR/report.md and DIR/figure4.png (default runs/bench/slate_perf). The default
budget (800 steps x 3 seeds x 2 variants at batch 16) takes about 12 minutes on 2 idle cores. Timings
suffer badly when other processes compete for the cores (the load average is recorded); the study's
losses and MSEs do not depend on timing (same seeds, same numbers).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from deqslots import SLATE, slate_config_for
from deqslots.batches import BatchStream
from deqslots.checkpoint import load_checkpoint
from deqslots.data import generate_batch
from deqslots.slate.figures import plot_slate_grid
from deqslots.train import TrainConfig, build_model, train

VARIANTS = ("vanilla", "IN", "BN", "BB", "IB")
# CPU-scale recipe of the seed study (the same for both variants): SLATE's optimiser and schedules with
# larger learning rates than its 250k-step values, so a few hundred steps get somewhere.
STUDY = dict(model="slate", config="cpu-small", data="clevr-mirror", batch_size=16, lr=4e-4, dvae_lr=1e-3,
             eval_batches=4)


def _median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def generation_times(arch: str, batch: int, repeats: int) -> dict[str, float]:
    """Seconds to reconstruct ``batch`` images through the slots, with and without the KV cache."""
    torch.manual_seed(0)
    model = SLATE(slate_config_for(arch, variant="IN")).eval()
    images, _ = generate_batch("clevr-mirror", range(batch), "val", model.config.resolution, 0)
    model.reconstruct(images[:2])  # one-off allocations
    cached = _median_seconds(lambda: model.reconstruct(images, use_cache=True), repeats)
    uncached = _median_seconds(lambda: model.reconstruct(images, use_cache=False), repeats)
    return {"cached_s": cached, "uncached_s": uncached, "speedup": uncached / cached, "batch": batch,
            "tokens": model.config.num_tokens}


def steps_per_second(variant: str, batch: int, timed: int) -> float:
    torch.manual_seed(0)
    config = TrainConfig(**{**STUDY, "variant": variant, "batch_size": batch})
    model = build_model(config)
    groups = model.parameter_groups()
    opt = torch.optim.Adam([{"params": groups["dvae"], "lr": 1e-3}, {"params": groups["main"], "lr": 1e-4}])
    images, _ = generate_batch("clevr-mirror", range(batch), "train", 64, 0)
    times = []
    for i in range(timed + 2):
        start = time.perf_counter()
        loss = model(images, tau=1.0)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, math.inf)
        opt.step()
        if i >= 2:  # the first steps pay one-off allocation costs
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


def _train_ce_tail(metrics: Path, fraction: float = 0.1) -> float:
    with open(metrics, newline="") as handle:
        ce = [float(r["ce"]) for r in csv.DictReader(handle)]
    tail = ce[-max(1, int(len(ce) * fraction)):]
    return sum(tail) / len(tail)


def seed_study(out: Path, steps: int, seeds: list[int]) -> dict:
    """vanilla vs IN, same seeds and data, ``steps`` each; per-run summaries."""
    runs = {}
    for seed in seeds:
        for variant in ("vanilla", "IN"):
            run_dir = out / f"{variant}_seed{seed}"
            if run_dir.exists():
                shutil.rmtree(run_dir)  # this script's own output from an earlier call
            config = TrainConfig(**STUDY, variant=variant, seed=seed, steps=steps, eval_every=steps,
                                 checkpoint_every=steps, out=str(run_dir), progress=False)
            summary = train(config)
            summary["train_ce_tail"] = _train_ce_tail(run_dir / "metrics.csv")
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


def _stats(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps, one seed, no paper-64")
    parser.add_argument("--out", default="runs/bench/slate_perf")
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default 800; quick 20)")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; quick 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default torch's); 1 avoids oversubscribing a shared machine")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps = args.steps or (20 if args.quick else 800)
    load_before = os.getloadavg()
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]

    generation = {"cpu-small": generation_times("cpu-small", 16, 1 if args.quick else 3)}
    if not args.quick:
        generation["paper-64"] = generation_times("paper-64", 4, 1)
    for arch, g in generation.items():
        print(f"generation {arch} ({g['batch']} images, {g['tokens']} tokens): cached {g['cached_s']:.2f} s, "
              f"uncached {g['uncached_s']:.2f} s, {g['speedup']:.1f}x", flush=True)
    speed = {v: steps_per_second(v, 16, 3 if args.quick else 10) for v in VARIANTS}
    print("steps/s (batch 16): " + ", ".join(f"{v} {s:.2f}" for v, s in speed.items()), flush=True)

    began = time.perf_counter()
    runs = seed_study(out, steps, seeds)
    figure(out, seeds[0])
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "threads": torch.get_num_threads(), "torch": torch.__version__, "python": sys.version.split()[0],
                    "load_average_1min_start_end": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "out": str(out),
        "command": "python -m benchmarks.slate_perf" + (" --quick" if args.quick else "")
                   + (f" --steps {args.steps}" if args.steps else "") + (f" --seeds {args.seeds}" if args.seeds else "")
                   + (f" --threads {args.threads}" if args.threads else ""),
        "date": time.strftime("%Y-%m-%d"),
        "generation": generation,
        "train_steps_per_s_batch16": speed,
        "study": {"steps": steps, "seeds": seeds, "recipe": STUDY, "seconds": time.perf_counter() - began,
                  "runs": runs},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    text = report(results)
    (out / "report.md").write_text(text)
    print(text)
    return results


def report(r: dict) -> str:
    m = r["machine"]
    lines = ["## SLATE", "",
             f"Machine: {m['platform']}, {m['cpus']} CPUs, {m['threads']} torch threads, torch {m['torch']}, "
             f"Python {m['python']}; 1-minute load average {m['load_average_1min_start_end'][0]} at the start and "
             f"{m['load_average_1min_start_end'][1]} at the end. {r['date']}. Command: `{r['command']}` "
             f"(results.json, report.md and figure4.png in {r['out']}). Model: `cpu-small` SLATE (64x64 -> 256 "
             "tokens, vocabulary 128, d_model 64, 2 blocks, 7 slots of 64) unless named.", "",
             "### Reconstruction through the slots: generation with and without the key/value cache", "",
             "| architecture | images | tokens | with cache | without | speed-up |", "|---|---|---|---|---|---|"]
    for arch, g in r["generation"].items():
        lines.append(f"| {arch} | {g['batch']} | {g['tokens']} | {g['cached_s']:.2f} s | {g['uncached_s']:.2f} s | "
                     f"{g['speedup']:.1f}x |")
    lines += ["", "### Training steps/s (batch 16, forward + backward + Adam, data excluded)", "",
              "| " + " | ".join(VARIANTS) + " |", "|" + "---|" * len(VARIANTS),
              "| " + " | ".join(f"{r['train_steps_per_s_batch16'][v]:.2f}" for v in VARIANTS) + " |"]
    s = r["study"]
    rec = s["recipe"]
    lines += ["", f"### Implicit (IN) vs vanilla SLATE, clevr-mirror 64x64, {s['steps']} steps, seeds {s['seeds']}",
              "", f"Same seeds, data and steps for both; batch {rec['batch_size']}, Adam lr {rec['lr']} (warm-up "
              f"{max(1, s['steps'] // 10)} steps) and dVAE lr {rec['dvae_lr']}, inf-norm clipping 1.0, temperature "
              f"1.0 -> 0.1 over {min(30000, s['steps'] // 2)} steps; 3 slot-attention iterations. CE is summed "
              "over the 256 tokens (the paper's unit); 'train CE' is the mean over the last 10% of steps, 'val CE' "
              f"teacher-forced on {rec['eval_batches'] * rec['batch_size']} validation images, on which the MSE "
              "through the slots (per-image sum, images in [0, 1]; per pixel in brackets) is measured too. The "
              "dVAE gets no gradient from the slot side and sees the same noise, so it is the same in both "
              f"variants. Whole study: {s['seconds']:.0f} s.", "",
              "| seed | variant | train CE | val CE | MSE through slots | dVAE MSE | FG-ARI (attention) |",
              "|---|---|---|---|---|---|---|"]
    for seed in s["seeds"]:
        for v in ("vanilla", "IN"):
            x = s["runs"][f"{v}/{seed}"]
            lines.append(f"| {seed} | {v} | {x['train_ce_tail']:.1f} | {x['ce']:.1f} | {x['mse_sum']:.1f} "
                         f"({x['mse']:.5f}) | {x['dvae_mse_sum']:.1f} | {x['fg_ari']:.3f} |")
    get = lambda v, k: [s["runs"][f"{v}/{seed}"][k] for seed in s["seeds"]]  # noqa: E731
    lines += ["", "| mean ± sd over seeds | train CE | val CE | MSE through slots |", "|---|---|---|---|"]
    for v in ("vanilla", "IN"):
        lines.append(f"| {v} | {_stats(get(v, 'train_ce_tail'))} | {_stats(get(v, 'ce'))} | "
                     f"{_stats(get(v, 'mse_sum'))} |")
    diffs = {k: [a - b for a, b in zip(get("IN", k), get("vanilla", k))] for k in ("train_ce_tail", "ce", "mse_sum")}
    lines.append(f"| IN - vanilla (paired) | {_stats(diffs['train_ce_tail'])} | {_stats(diffs['ce'])} | "
                 f"{_stats(diffs['mse_sum'])} |")
    wins = {k: sum(d < 0 for d in v) for k, v in diffs.items()}
    lines += ["", f"IN lower than vanilla in {wins['train_ce_tail']}/{len(s['seeds'])} seeds on train CE, "
              f"{wins['ce']}/{len(s['seeds'])} on val CE, {wins['mse_sum']}/{len(s['seeds'])} on MSE through the "
              "slots."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
