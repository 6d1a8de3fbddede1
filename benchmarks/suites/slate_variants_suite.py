"""Suite ``slate-variants``: the paper's Figure 3b at CPU scale: token cross-entropy against step for SLATE's
slot-attention variants, trained in stages on one frozen dVAE:
``python -m benchmarks slate-variants [--quick] [--dvae RUN] [--variants vanilla,IN,...] [options]``.

Method: docs/benchmarks/methods.md#slate-variants
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from solvers import VARIANTS
from benchmarks.suites.common import (Option, RunContext, SuiteResult, Table, UsageError, band, by_size, mean_sd,
                                      pyplot, read_metrics, save_figure, seed_list, tail_mean, train_run, worker_pool)

__all__ = ["run", "OPTIONS", "TABLES", "staged_config"]

RUN_COLUMNS = ("variant", "seed", "steps", "clip_warmup", "train_ce_tail", "ce", "mse", "mean_colour_mse",
               "mse_other", "token_accuracy", "fg_ari", "fg_ari_token_oracle", "colour_fg_ari", "grad_norm_median",
               "grad_norm_max", "clipped_frac", "diverged", "seconds")
SUMMARY_COLUMNS = ("variant", "seeds", "train_ce_tail", "ce", "ce_over_IN", "mse", "mse_over_mean_colour",
                   "fg_ari", "grad_norm_max", "clipped_frac")
TABLES = MappingProxyType({"runs": RUN_COLUMNS, "summary": SUMMARY_COLUMNS,
                           "curves": ("variant", "seed", "step", "ce", "grad_norm")})
# The lever study's recipe for the slots stage on cpu-slate (docs/benchmarks/notebook.md, "SLATE on a CPU").
RECIPE = MappingProxyType(dict(model="slate", config="cpu-slate", data="shapes", batch_size=32, lr=4e-4,
                               warmup_steps=200, grad_clip=1.0, grad_clip_type="inf", eval_batches=4))
SIZES = MappingProxyType({  # steps per run, dVAE steps, batch, eval batches, resolution, vocabulary
    "tiny": (3, 2, 2, 1, 16, 16), "quick": (30, 30, 8, 1, 32, 64), "full": (3000, 4000, 32, 4, 32, 256)})


OPTIONS = (
    Option("--data", "the data set of the dVAE and every run (default shapes)"),
    Option("--dvae", "a trained dVAE run (deqslots train --model slate --config cpu-slate --stage dvae); default: "
           "train one first", metavar="RUN"),
    Option("--dvae-steps", "steps of the dVAE the suite trains without --dvae (default 4000)", at_least=1, type=int),
    Option("--variants", "comma-separated (default vanilla,IN,BN,BB,IB)"),
    Option("--steps", "training steps per run (default 3000)", at_least=1, type=int),
    Option("--seed-list", "comma-separated seeds (default 0,1,2; quick/tiny 0)"),
    Option("--set", "SLATE architecture fields of every run (default backward_max_iter=50), e.g. iters=7",
           dest="config_set", metavar="FIELD=VALUE,..."),
    Option("--no-clip-warmup", "train without gradient clipping and without warm-up", action="store_true"),
    Option("--jobs", "runs at a time, each in its own process (default 1)", at_least=1, type=int),
)


def staged_config(variant: str, seed: int, steps: int, dvae: str, out: Path, size: tuple, config_set: str,
                  clip_warmup: bool, data: str = RECIPE["data"]):
    """The ``TrainConfig`` of one slots-stage run."""
    from deqslots.training.config import TrainConfig

    _, _, batch, eval_batches, resolution, vocab = size
    recipe = {**RECIPE, "batch_size": batch, "eval_batches": eval_batches, "data": data}
    if not clip_warmup:
        recipe.update(grad_clip=0.0, warmup_steps=0)
    return TrainConfig(**recipe, variant=variant, seed=seed, steps=steps, stage="slots", dvae=dvae,
                       resolution=resolution, vocab_size=vocab, config_set=config_set, eval_every=steps,
                       checkpoint_every=steps, out=str(out), progress=False, threads=1)


def _plot(curves: dict[tuple[str, int], list[dict]], variants: list[str], out: Path, window: int) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for variant in variants:
        runs = [c for (v, _), c in curves.items() if v == variant]
        if not runs:
            continue
        length = min(len(c) for c in runs)
        steps = np.array([r["step"] for r in runs[0][:length]])
        kernel = np.ones(min(window, length)) / min(window, length)
        for ax, key in zip(axes, ("ce", "grad_norm")):
            smooth = np.array([np.convolve([r[key] for r in c[:length]], kernel, mode="valid") for c in runs])
            band(ax, steps[len(steps) - smooth.shape[1]:], smooth, variant)
    axes[0].set_title(f"training token CE (sum over tokens; moving average {window}; band = min-max over seeds)",
                      fontsize=8)
    axes[0].set_yscale("log")
    axes[1].set_title("gradient norm before clipping", fontsize=8)
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    return save_figure(fig, out, "fig3b.png")


def run(ctx: RunContext, bar) -> SuiteResult:
    """The dVAE (unless given), then every (variant, seed) run; ``bar`` advances once per run."""
    from deqslots.training.config import TrainConfig

    size = SIZES[by_size(ctx.size, "tiny", "quick", "full")]
    o = ctx.overrides
    steps = o.get("steps") or size[0]
    dvae_steps = o.get("dvae_steps") or size[1]
    variants = [v for v in (o.get("variants") or ",".join(VARIANTS)).split(",") if v]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise UsageError(f"--variants takes {', '.join(VARIANTS)}; got {', '.join(bad)}")
    seeds = seed_list(ctx, (0,) if ctx.size in ("tiny", "quick") else (0, 1, 2))
    config_set = o.get("config_set")
    config_set = "backward_max_iter=50" if config_set is None else config_set
    clip_warmup = not o.get("no_clip_warmup")
    data = o.get("data") or RECIPE["data"]
    jobs = o.get("jobs") or 1
    ctx.out.mkdir(parents=True, exist_ok=True)
    bar.reset(total=len(variants) * len(seeds) + 1)
    dvae = o.get("dvae")
    if dvae is None:
        dvae = str(ctx.out / "dvae")
        _, _, batch, eval_batches, resolution, vocab = size
        if not (Path(dvae) / "summary.json").exists():
            train_run(TrainConfig(**{**RECIPE, "batch_size": batch, "eval_batches": eval_batches, "data": data},
                                  stage="dvae", steps=dvae_steps, dvae_lr=1e-3, resolution=resolution,
                                  vocab_size=vocab, eval_every=dvae_steps, checkpoint_every=dvae_steps, out=dvae,
                                  progress=False, threads=1), fresh=False)
    elif not (Path(dvae) / "checkpoint.pt").is_file():
        raise UsageError(f"--dvae {dvae}: no checkpoint.pt there; train one with deqslots train --model slate "
                         "--config cpu-slate --stage dvae --out RUN")
    bar.update()
    specs = {(v, s): staged_config(v, s, steps, dvae, ctx.out / f"{v}_seed{s}", size, config_set, clip_warmup, data)
             for s in seeds for v in variants}
    with worker_pool(jobs, threads=1)[0] as pool:  # each run starts afresh in its folder
        futures = {key: pool.submit(train_run, config) for key, config in specs.items()}
        for future in futures.values():
            future.add_done_callback(lambda _: bar.update())
        summaries = {key: future.result() for key, future in futures.items()}
    result = SuiteResult("slate-variants", {"steps": steps, "seeds": seeds, "variants": variants, "dvae": dvae,
                                            "config_set": config_set, "clip_warmup": clip_warmup,
                                            "recipe": dict(RECIPE, data=data), "size": list(size)})
    runs = result.tables["runs"] = Table(
        f"Slots stage of cpu-slate on the frozen dVAE {dvae}: {steps} steps per run, batch {size[2]}, Adam "
        f"{RECIPE['lr']}, " + ("warm-up 200 steps, inf-norm clipping 1.0" if clip_warmup else
                               "no warm-up, no clipping") + f", --set {config_set or '(none)'}. CE summed over the "
        "tokens; train_ce_tail = mean of the last 10% of steps, ce = validation (teacher forcing). mse = per-pixel "
        "MSE of the reconstruction through the slots (tokens generated greedily from the slots, then the dVAE), "
        "beside each image's mean colour (mean_colour_mse) and the same generations against other images "
        "(mse_other). fg_ari of the attention masks beside the token-grid oracle and the colour-only control.",
        RUN_COLUMNS)
    curves: dict[tuple[str, int], list[dict]] = {}
    curve_table = result.tables["curves"] = Table("Training CE and gradient norm at every step of every run.",
                                                  TABLES["curves"], in_report=False)
    for (variant, seed), summary in summaries.items():
        metrics = read_metrics(Path(specs[(variant, seed)].out) / "metrics.csv")
        curve = curves[(variant, seed)] = [{"step": int(step), "ce": ce, "grad_norm": norm} for step, ce, norm
                                           in zip(metrics["step"], metrics["ce"], metrics["grad_norm"])]
        for r in curve:
            curve_table.add(variant=variant, seed=seed, **r)
        ce, norms = metrics["ce"], metrics["grad_norm"]
        runs.add(variant=variant, seed=seed, steps=len(curve), clip_warmup=clip_warmup,
                 train_ce_tail=tail_mean(ce), ce=summary.get("ce"), mse=summary.get("mse"),
                 mean_colour_mse=summary.get("mean_colour_mse"), mse_other=summary.get("mse_other"),
                 token_accuracy=summary.get("token_accuracy"), fg_ari=summary.get("fg_ari"),
                 fg_ari_token_oracle=summary.get("fg_ari_token_oracle"), colour_fg_ari=summary.get("colour_fg_ari"),
                 grad_norm_median=statistics.median(norms), grad_norm_max=max(norms),
                 clipped_frac=(sum(n > 1.0 for n in norms) / len(norms)) if clip_warmup else 0.0,
                 diverged=len(curve) < steps or not all(math.isfinite(c) for c in ce),
                 seconds=summary.get("seconds"))
    rows = {v: [r for r in runs.rows if r["variant"] == v] for v in variants}
    reference = statistics.mean(r["train_ce_tail"] for r in rows["IN"]) if rows.get("IN") else None
    summary_table = result.tables["summary"] = Table(
        "Mean ± sd over seeds; ce_over_IN = mean train_ce_tail / IN's (the paper: vanilla about 10x IN at its "
        "scale); mse_over_mean_colour = mean MSE through the slots / mean-colour MSE (the target is <= 0.3).",
        SUMMARY_COLUMNS)
    for v, rs in rows.items():
        get = lambda key, rs=rs: [r[key] for r in rs]  # noqa: E731
        summary_table.add(variant=v, seeds=len(rs), train_ce_tail=mean_sd(get("train_ce_tail")),
                          ce=mean_sd(get("ce")),
                          ce_over_IN=(statistics.mean(get("train_ce_tail")) / reference) if reference else None,
                          mse=mean_sd(get("mse")),
                          mse_over_mean_colour=statistics.mean(get("mse")) / statistics.mean(get("mean_colour_mse")),
                          fg_ari=mean_sd(get("fg_ari")), grad_norm_max=mean_sd(get("grad_norm_max")),
                          clipped_frac=mean_sd(get("clipped_frac")))
    result.plots.append(_plot(curves, variants, ctx.out, max(1, steps // 30)))
    if torch.get_num_threads() != 1:
        result.notes.append(f"the runs used 1 torch thread each; this process had {torch.get_num_threads()}")
    return result
