"""Suite ``variants``: the paper's stability study (Chang et al. 2022, Figs. 3b, 5, 6) at CPU scale, every variant
over seeds with the tricks ablation and iteration counts:
``python -m benchmarks variants [--plan NAME] [--jobs N] [options]``.

Method: docs/benchmarks/methods.md#variants
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Optional

import numpy as np
import torch

import solvers
from benchmarks.suites.common import (Option, RunContext, SuiteResult, Table, band, pyplot, read_metrics,
                                      save_figure, tail_mean, train_run, worker_pool)

__all__ = ["run", "OPTIONS", "TABLES", "Plan", "PLANS", "DEFAULT_SIZE", "plan_for", "RUN_COLUMNS",
           "TRAJECTORY_COLUMNS", "CURVE_COLUMNS", "SUMMARY_COLUMNS"]

RUN_COLUMNS = ("run", "model", "groups", "variant", "iters", "seed", "grad_clip", "warmup_steps", "steps",
               "steps_done", "diverged", "diverged_at", "final_loss", "final_val_mse", "final_val_mse_sum",
               "final_val_fg_ari", "grad_norm_median", "grad_norm_max", "clipped_frac", "rho_T_final",
               "rho_fp_final", "seconds")
TRAJECTORY_COLUMNS = ("run", "model", "variant", "iters", "seed", "tricks", "step", "val_mse", "val_fg_ari",
                      "rho_T_median", "rho_T_max", "rho_fp_median", "rho_fp_max", "residual_T", "fp_residual",
                      "fp_converged")
CURVE_COLUMNS = ("run", "step", "loss", "lr", "grad_norm")
SUMMARY_COLUMNS = ("group", "model", "variant", "iters", "tricks", "seeds", "diverged", "final_loss_mean",
                   "val_mse_mean", "val_mse_std", "val_fg_ari_mean", "val_fg_ari_std", "rho_T_mean", "rho_T_std",
                   "rho_fp_mean", "grad_norm_median_mean", "grad_norm_max_mean", "clipped_frac_mean")
TABLES = MappingProxyType({"runs": RUN_COLUMNS, "trajectory": TRAJECTORY_COLUMNS, "curves": CURVE_COLUMNS,
                           "summary": SUMMARY_COLUMNS})
SLATE_CLIP = 1.0  # SLATE's recipe (max-norm), used instead of the pilot's threshold for SLATE runs
# Ablation settings by name: (gradient clipping, warm-up).
TRICKS = MappingProxyType({"clip+warmup": (True, True), "no clip": (False, True), "no warmup": (True, False),
                           "no clip, no warmup": (False, False)})
PAPER_TRICKS = ("clip+warmup", "no clip", "no warmup")  # one trick removed at a time


@dataclass(frozen=True)
class Plan:
    """Everything that sizes the study (recorded in results.json)."""

    resolution: int
    batch_size: int
    steps: int
    segments: int
    seeds: int
    variants: tuple[str, ...]
    main_iters: int
    ablation_variants: tuple[str, ...]
    iter_variants: tuple[str, ...]
    iter_counts: tuple[int, ...]
    pilot_steps: int
    clip_quantile: float = 0.25
    lr: float = 4e-4
    eval_batches: int = 4
    rho_batch: int = 16
    data: str = "clevr-mirror"
    config: str = "cpu-small"
    config_set: str = ""  # other architecture fields, as `deqslots train --set` (e.g. backward_max_iter=50)
    with_slate: bool = False
    aux_seeds: Optional[int] = None  # seeds of the ablation and iteration groups (None = ``seeds``)
    # A fixed warm-up length (capped at ``steps``); None = a tenth of ``steps``. Fixed where the warm-up
    # is part of a known-good recipe that ``--steps`` should not rescale.
    fixed_warmup: Optional[int] = None
    ablation_tricks: tuple[str, ...] = PAPER_TRICKS  # keys of TRICKS trained in the ablation group

    @property
    def warmup_steps(self) -> int:
        if self.fixed_warmup is not None:
            return max(1, min(self.fixed_warmup, self.steps))
        return max(1, self.steps // 10)


# the plans and what each is for: docs/benchmarks/methods.md#variants
PLANS = MappingProxyType({
    "tiny": Plan(16, 4, 4, 1, 1, ("vanilla", "IN"), 3, ("IN",), ("IN",), (3,), 3, eval_batches=1, rho_batch=2),
    "quick": Plan(16, 8, 30, 2, 1, ("vanilla", "IN"), 3, ("IN",), ("IN",), (1, 7), 15, eval_batches=2, rho_batch=8),
    "cpu": Plan(32, 16, 1500, 6, 3, solvers.VARIANTS, 7, ("vanilla", "IN"), ("vanilla", "IN"), (1, 3, 7, 15), 300,
                lr=6e-4, eval_batches=4, data="shapes", fixed_warmup=200, ablation_tricks=tuple(TRICKS)),
    "objects": Plan(32, 16, 1500, 3, 3, solvers.VARIANTS, 3, ("vanilla", "IN"), (), (), 300, lr=6e-4, eval_batches=8,
                    data="same-hue", config="cpu-objects", config_set="backward_max_iter=50", fixed_warmup=200,
                    ablation_tricks=("no clip, no warmup",)),
    "objects-iterations": Plan(32, 16, 1500, 3, 3, ("vanilla", "IN"), 7, (), ("vanilla", "IN"), (1, 7, 15), 300,
                               lr=6e-4, eval_batches=8, data="same-hue", config="cpu-objects",
                               config_set="backward_max_iter=50", fixed_warmup=200, ablation_tricks=()),
    "full": Plan(32, 32, 3000, 10, 3, solvers.VARIANTS, 7, ("vanilla", "IN"), ("vanilla", "IN"), (1, 3, 7, 15), 200),
})
DEFAULT_SIZE = "cpu"  # the plan ``python -m benchmarks variants`` runs without --quick / --full


OPTIONS = (
    Option("--jobs", "training runs at a time, each in its own process (default 1: in this one)", at_least=1, type=int),
    Option("--steps", "training steps per run", at_least=1, type=int),
    Option("--batch-size", None, at_least=1, type=int),
    Option("--resolution", None, at_least=1, type=int),
    Option("--segments", "measurement points (spectral radius, validation) per run", at_least=1, type=int),
    Option("--aux-seeds", "seeds of the ablation and iteration-count groups (default: --seeds)", at_least=1, type=int),
    Option("--with-slate", "add SLATE to the main comparison", action="store_true"),
    Option("--plan", "named study (overrides --quick/--full): cpu = shapes with cpu-small (default), objects = "
           "same-hue with cpu-objects and an uncapped adjoint, objects-iterations = its T = 1, 7, 15 group, full = "
           "clevr-mirror", choices=sorted(set(PLANS) - {"tiny"})),
    Option("--data", "data set of every run (default: the plan's)"),
    Option("--config", "named architecture of every run (default: the plan's)"),
    Option("--set", "architecture fields of every run, as deqslots train --set (default: the plan's)",
           dest="config_set", metavar="FIELD=VALUE,..."),
)


def plan_for(ctx: RunContext) -> Plan:
    """The plan of ``ctx.size`` with the command line's overrides (seeds, steps, batch size, ...)."""
    plan = PLANS[ctx.overrides.get("plan") or ctx.size]
    changes = {k: v for k, v in ctx.overrides.items() if v is not None and k in (
        "steps", "batch_size", "resolution", "segments", "with_slate", "aux_seeds", "data", "config", "config_set")}
    if ctx.seeds is not None:
        changes["seeds"] = ctx.seeds
    return dataclasses.replace(plan, **changes)


@dataclass(frozen=True)
class Spec:
    """One training run: model, variant, iterations, seed and which tricks are on."""

    model: str
    variant: str
    iters: int
    seed: int
    clip: bool
    warmup: bool

    @property
    def name(self) -> str:
        tag = "" if self.model == "slot-attention" else "slate_"
        return (f"{tag}{self.variant}_T{self.iters}_s{self.seed}_{'clip' if self.clip else 'noclip'}_"
                f"{'warm' if self.warmup else 'nowarm'}")

    @property
    def tricks(self) -> str:
        return next(k for k, v in TRICKS.items() if v == (self.clip, self.warmup))


def _specs(plan: Plan) -> dict[Spec, list[str]]:
    """Every run to train and the groups (main, ablation, iterations, slate) it serves."""
    runs: dict[Spec, list[str]] = {}
    for seed in range(plan.seeds):
        for v in plan.variants:
            runs.setdefault(Spec("slot-attention", v, plan.main_iters, seed, True, True), []).append("main")
        aux = seed < (plan.aux_seeds or plan.seeds)
        for v in plan.ablation_variants if aux else ():
            for clip, warm in (TRICKS[label] for label in plan.ablation_tricks):
                runs.setdefault(Spec("slot-attention", v, plan.main_iters, seed, clip, warm), []).append("ablation")
        for v in plan.iter_variants if aux else ():
            for t in plan.iter_counts:
                runs.setdefault(Spec("slot-attention", v, t, seed, True, True), []).append("iterations")
        if plan.with_slate:
            for v in plan.variants:
                runs.setdefault(Spec("slate", v, plan.main_iters, seed, True, True), []).append("slate")
    return runs


def _config(spec: Spec, plan: Plan, clip_value: float, out: Path, steps: int, segment: int):
    from deqslots.training.config import TrainConfig

    slate = spec.model == "slate"  # SLATE keeps its own recipe: lr 1e-4 (dVAE 3e-4), clip 1.0 on the max-norm
    return TrainConfig(model=spec.model, variant=spec.variant, data=plan.data, config=plan.config,
                       config_set="" if slate else plan.config_set,
                       resolution=plan.resolution, iters=spec.iters, steps=steps, batch_size=plan.batch_size,
                       seed=spec.seed, lr=None if slate else plan.lr,
                       warmup_steps=plan.warmup_steps if spec.warmup else 0, decay_steps=0,
                       grad_clip=(None if slate else clip_value) if spec.clip else 0.0,
                       grad_clip_type=None if slate else "l2",
                       eval_every=segment, eval_batches=plan.eval_batches, checkpoint_every=segment, out=str(out),
                       resume=True, progress=False, device="cpu")


@functools.lru_cache(maxsize=4)  # once per process: every run of a worker measures on the same batch
def _fixed_images(plan: Plan) -> torch.Tensor:
    from deqslots.data.batches import BatchStream

    return BatchStream(plan.data, "val", plan.resolution, plan.rho_batch, 0).batch(0)["image"]


@torch.no_grad()
def _spectral(config, checkpoint: Path, images: torch.Tensor, device: torch.device) -> dict:
    """rho of the step's Jacobian at the model's T-th iterate and at the converged fixed point."""
    from deqslots.training.checkpoint import load_checkpoint
    from deqslots.training.loop import build_model

    model = build_model(config)
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    model.to(device).eval()
    sa = model.slot_attention
    captured = {}

    def grab(module, args, kwargs):  # the features the model hands slot attention, whatever the model
        captured["inputs"] = args[0] if args else kwargs["inputs"]

    handle = sa.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model(images.to(device))
    finally:
        handle.remove()
    inputs = sa.norm_inputs(captured["inputs"])
    k, v = sa.to_k(inputs), sa.to_v(inputs)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(k.shape[0], sa.num_slots, sa.slot_dim, generator=gen).to(device)
    slots0 = sa.slots_mu + sa.slots_log_sigma.exp() * noise

    def step(s):
        return sa.step(s, k, v)

    z_t, _ = solvers.fixed_point(step, slots0, forward=solvers.Iterate(keep="last"), backward="onestep", tol=None,
                                 max_iter=config.iters)
    z_fp, info = solvers.fixed_point(step, slots0, forward="anderson", backward="onestep", tol=1e-5, max_iter=200,
                                     stop_mode="rel", on_fail="ignore", nonfinite="best")
    flat = lambda s: s.flatten(1)  # noqa: E731
    residual_t = torch.linalg.vector_norm(flat(step(z_t) - z_t), dim=1) / torch.linalg.vector_norm(flat(z_t), dim=1)
    with torch.enable_grad():
        rho_t = solvers.spectral_radius(step, z_t, iters=60, generator=torch.Generator(device).manual_seed(1)).cpu()
        rho_fp = solvers.spectral_radius(step, z_fp, iters=60, generator=torch.Generator(device).manual_seed(1)).cpu()
    return {"rho_T_median": float(rho_t.median()), "rho_T_max": float(rho_t.max()),
            "rho_fp_median": float(rho_fp.median()), "rho_fp_max": float(rho_fp.max()),
            "residual_T": float(residual_t.median()), "fp_residual": float(info.residual.median()),
            "fp_converged": float(info.converged.float().mean())}


def _train_run(spec: Spec, groups: list[str], plan: Plan, clip_value: float, out_root: Path, device: str
               ) -> dict[str, list[dict]]:
    """Train one run in segments and measure it; returns its rows by table name ("runs", "trajectory", "curves").

    A top-level function of picklable arguments, so a worker process can run it; it writes only its own run
    folder and hands its rows back, so the caller can add them in plan order whatever order runs finish in.
    """
    out = out_root / "runs" / spec.name
    if spec.model == "slate":
        clip_value = SLATE_CLIP
    images = _fixed_images(plan)
    ends = sorted({max(1, round(plan.steps * (i + 1) / plan.segments)) for i in range(plan.segments)})
    segment = max(1, plan.steps // plan.segments)
    began, diverged_at = time.perf_counter(), None
    traj: list[dict] = []
    for end in ends:
        config = _config(spec, plan, clip_value, out, end, segment)
        try:  # the first segment starts afresh (our own output of an earlier invocation goes), the others resume
            train_run(config, fresh=end == ends[0], quiet=True)
        except FloatingPointError:  # the loss went non-finite: a result of the study, not a crash
            diverged_at = len(read_metrics(out / "metrics.csv").get("step", [])) + 1
            break
        last = {key: values[-1] for key, values in read_metrics(out / "metrics.csv").items()}
        rho = _spectral(config, out / "checkpoint.pt", images, torch.device(device))
        traj.append(dict(run=spec.name, model=spec.model, variant=spec.variant, iters=spec.iters, seed=spec.seed,
                         tricks=spec.tricks, step=end, val_mse=last.get("val_mse", math.nan),
                         val_fg_ari=last.get("val_fg_ari", math.nan), **rho))
    seconds = time.perf_counter() - began
    metrics = read_metrics(out / "metrics.csv")
    steps, losses, norms = (metrics.get(key, []) for key in ("step", "loss", "grad_norm"))
    curves = [dict(run=spec.name, step=int(step), loss=loss, lr=lr, grad_norm=norm)
              for step, loss, lr, norm in zip(steps, losses, metrics.get("lr", []), norms)]
    evaluated = [i for i, mse in enumerate(metrics.get("val_mse", [])) if mse == mse]
    final = {key: values[evaluated[-1]] for key, values in metrics.items()} if evaluated else {}
    norms = np.array(norms if steps else [math.nan])
    summary = dict(
        run=spec.name, model=spec.model, groups="+".join(groups), variant=spec.variant, iters=spec.iters,
        seed=spec.seed, grad_clip=clip_value if spec.clip else None,
        warmup_steps=plan.warmup_steps if spec.warmup else 0, steps=plan.steps, steps_done=len(steps),
        diverged=diverged_at is not None, diverged_at=diverged_at, final_loss=tail_mean(losses),
        final_val_mse=final.get("val_mse", math.nan), final_val_mse_sum=final.get("val_mse_sum", math.nan),
        final_val_fg_ari=final.get("val_fg_ari", math.nan), grad_norm_median=float(np.nanmedian(norms)),
        grad_norm_max=float(np.nanmax(norms)),
        clipped_frac=float(np.mean(norms > clip_value)) if spec.clip else 0.0,
        rho_T_final=traj[-1]["rho_T_median"] if traj else None,
        rho_fp_final=traj[-1]["rho_fp_median"] if traj else None,
        seconds=seconds)
    return {"runs": [summary], "trajectory": traj, "curves": curves}


def _pilot(plan: Plan, out_root: Path) -> tuple[float, list[float]]:
    """Gradient norms of an unclipped vanilla run (seed 1000): the clip threshold is their low quantile."""
    out = out_root / "runs" / "pilot"
    spec = Spec("slot-attention", "vanilla", plan.main_iters, 1000, False, True)
    train_run(_config(spec, dataclasses.replace(plan, steps=plan.pilot_steps), 0.0, out, plan.pilot_steps,
                      plan.pilot_steps), quiet=True)
    norms = read_metrics(out / "metrics.csv")["grad_norm"]
    return float(np.nanquantile(norms, plan.clip_quantile)), norms


def _needs_pilot(spec: Spec) -> bool:
    """Whether a run clips at the pilot's threshold (runs without clipping, and SLATE's, can start at once)."""
    return spec.clip and spec.model != "slate"


def _summary(result: SuiteResult, specs: dict[Spec, list[str]]) -> None:
    runs = {r["run"]: r for r in result.tables["runs"].rows}
    groups: dict[tuple, list[dict]] = {}
    for spec, names in specs.items():
        for group in names:
            groups.setdefault((group, spec.model, spec.variant, spec.iters, spec.tricks), []).append(runs[spec.name])

    def stats(rows, key):  # mean and std over the runs that did not diverge
        vals = np.array([r[key] for r in rows if not r["diverged"]], dtype=float)
        vals = vals[~np.isnan(vals)]
        return (float(vals.mean()) if vals.size else None, float(vals.std()) if vals.size > 1 else None)

    for (group, model, variant, iters, tricks), rows in groups.items():
        mse, mse_sd = stats(rows, "final_val_mse")
        ari, ari_sd = stats(rows, "final_val_fg_ari")
        rho, rho_sd = stats(rows, "rho_T_final")
        result.tables["summary"].add(
            group=group, model=model, variant=variant, iters=iters, tricks=tricks, seeds=len(rows),
            diverged=sum(r["diverged"] for r in rows), final_loss_mean=stats(rows, "final_loss")[0],
            val_mse_mean=mse, val_mse_std=mse_sd, val_fg_ari_mean=ari, val_fg_ari_std=ari_sd,
            rho_T_mean=rho, rho_T_std=rho_sd, rho_fp_mean=stats(rows, "rho_fp_final")[0],
            grad_norm_median_mean=stats(rows, "grad_norm_median")[0],
            grad_norm_max_mean=stats(rows, "grad_norm_max")[0], clipped_frac_mean=stats(rows, "clipped_frac")[0])


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or values.size < window:
        return values
    kernel = np.ones(window) / window
    return np.convolve(np.pad(values, (window - 1, 0), mode="edge"), kernel, mode="valid")


def _curve_band(ax, curves: list[dict], names: list[str], key: str, label: str, window: int) -> None:
    """Every step of the named runs, smoothed; runs that diverged end early and are padded with NaN."""
    runs = [c for c in ([r[key] for r in curves if r["run"] == n] for n in names) if c]
    if runs:
        data = np.full((len(runs), max(map(len, runs))), np.nan)
        for i, c in enumerate(runs):
            data[i, :len(c)] = _smooth(np.array(c, dtype=float), window)
        band(ax, np.arange(1, data.shape[1] + 1), data, label, lw=1)


def _segment_band(ax, traj: list[dict], names: list[str], key: str, label: str) -> None:
    """A per-segment measurement of the named runs (diverged runs stop early)."""
    points: dict[int, list[float]] = {}
    for r in traj:
        if r["run"] in names and not math.isnan(r[key]):
            points.setdefault(r["step"], []).append(r[key])
    if points:
        xs = sorted(points)
        data = np.full((max(map(len, points.values())), len(xs)), np.nan)
        for j, x in enumerate(xs):
            data[:len(points[x]), j] = points[x]
        band(ax, xs, data, label, marker="o", ms=3, lw=1)


def _plots(result: SuiteResult, specs: dict[Spec, list[str]], plan: Plan, clip_value: float, out: Path) -> list[str]:
    plt = pyplot()
    window = max(1, plan.steps // 30)
    curves, traj = result.tables["curves"].rows, result.tables["trajectory"].rows
    summary = result.tables["summary"].rows

    def names(group, **match):
        return [s.name for s, g in specs.items() if group in g and all(getattr(s, k) == v for k, v in match.items())]

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for model in ("slot-attention", "slate") if plan.with_slate else ("slot-attention",):
        group = "main" if model == "slot-attention" else "slate"
        for v in plan.variants:
            tag = v if model == "slot-attention" else f"SLATE {v}"
            _curve_band(axes[0][0], curves, names(group, variant=v), "loss", tag, window)
            _curve_band(axes[0][1], curves, names(group, variant=v), "grad_norm", tag, window)
            pts: dict[int, list[float]] = {}
            for r in traj:
                if r["run"] in names(group, variant=v):
                    pts.setdefault(r["step"], []).append(r["rho_T_median"])
            xs = sorted(pts)
            axes[1][0].plot(xs, [np.mean(pts[x]) for x in xs], marker="o", ms=3, label=tag)
    axes[0][0].set_yscale("log")
    axes[0][0].set_title(f"training loss (moving average {window}; band = min-max over seeds)", fontsize=9)
    axes[0][1].set_yscale("log")
    axes[0][1].axhline(clip_value, color="k", ls=":", lw=0.8, label=f"clip {clip_value:.3g}")
    axes[0][1].set_title("gradient norm before clipping", fontsize=9)
    axes[1][0].set_title("spectral radius of the step's Jacobian at z_T (median over batch, mean over seeds)",
                         fontsize=8)
    axes[1][0].axhline(1.0, color="k", lw=0.6)
    rows = [r for r in summary if r["group"] in ("main", "slate")]
    x = np.arange(len(rows))
    ax = axes[1][1]
    ax.bar(x - 0.2, [r["val_mse_mean"] or np.nan for r in rows], 0.4,
           yerr=[r["val_mse_std"] or 0 for r in rows], label="val MSE (per pixel)", color="tab:blue")
    ax2 = ax.twinx()
    ax2.bar(x + 0.2, [r["val_fg_ari_mean"] or np.nan for r in rows], 0.4,
            yerr=[r["val_fg_ari_std"] or 0 for r in rows], label="val FG-ARI", color="tab:orange")
    ax.set_xticks(x)
    ax.set_xticklabels([r["variant"] if r["model"] == "slot-attention" else f"S-{r['variant']}" for r in rows])
    ax.set_ylabel("val MSE", color="tab:blue")
    ax2.set_ylabel("FG-ARI", color="tab:orange")
    ax.set_title("final validation metrics (mean +- std over seeds)", fontsize=9)
    for a in (axes[0][0], axes[0][1], axes[1][0]):
        a.set_xlabel("step")
        a.legend(fontsize=7)
    files = [save_figure(fig, out, "variants_main.png")]

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for v in plan.ablation_variants:
        for tricks in plan.ablation_tricks:
            clip, warm = TRICKS[tricks]
            group_names = names("ablation", variant=v, clip=clip, warmup=warm)
            _curve_band(axes[0], curves, group_names, "loss", f"{v} {tricks}", window)
            _curve_band(axes[1], curves, group_names, "grad_norm", f"{v} {tricks}", window)
    for v in plan.iter_variants:
        rows = sorted((r for r in summary if r["group"] == "iterations" and r["variant"] == v),
                      key=lambda r: r["iters"])
        axes[2].errorbar([r["iters"] for r in rows], [r["val_mse_mean"] or np.nan for r in rows],
                         yerr=[r["val_mse_std"] or 0 for r in rows], marker="o", capsize=3, label=v)
    axes[0].set_yscale("log")
    axes[0].set_title("ablation: training loss", fontsize=9)
    axes[1].set_yscale("log")
    axes[1].set_title("ablation: gradient norm", fontsize=9)
    axes[2].set_xscale("log", base=2)
    axes[2].set_xlabel("iterations T (training)")
    axes[2].set_title("final val MSE vs iterations", fontsize=9)
    for a in axes:
        if a.get_legend_handles_labels()[0]:  # a plan may leave a group out (objects: no iteration counts)
            a.legend(fontsize=6)
    files.append(save_figure(fig, out, "variants_ablation_iters.png"))

    # Validation over training (the trajectory table): does each variant find the objects, and how fast.
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for v in plan.variants:
        _segment_band(axes[0], traj, names("main", variant=v), "val_fg_ari", v)
        _segment_band(axes[1], traj, names("main", variant=v), "val_mse", v)
    for v in plan.iter_variants:
        for t in plan.iter_counts:
            _segment_band(axes[2], traj, names("iterations", variant=v, iters=t), "val_fg_ari", f"{v} T={t}")
    axes[0].set_title("main: validation FG-ARI (mean over seeds; band = min-max)", fontsize=9)
    axes[1].set_title("main: validation MSE", fontsize=9)
    axes[1].set_yscale("log")
    axes[2].set_title("iteration counts: validation FG-ARI", fontsize=9)
    for a in axes:
        a.set_xlabel("step")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=6)
    files.append(save_figure(fig, out, "variants_curves.png"))
    return files


def run(ctx: RunContext, bar) -> SuiteResult:
    """Pilot, then every run of the plan in segments; ``bar`` advances by a run's segments as each run ends.

    Runs go to ``ctx.jobs`` worker processes: the pilot and the runs that do not need its clip threshold
    first, the rest once the threshold is known. Rows are added in plan order, not completion order.
    """
    plan = plan_for(ctx)
    specs = _specs(plan)
    bar.reset(total=1 + len(specs) * plan.segments)
    bar.set_postfix_str("pilot (clip threshold)")
    executor, threads = worker_pool(ctx.jobs, ctx.threads)

    def submit(spec: Spec, clip_value: float) -> Future:
        def done(_: Future) -> None:
            bar.set_postfix_str(f"{spec.name} done", refresh=False)
            bar.update(plan.segments)

        future = executor.submit(_train_run, spec, specs[spec], plan, clip_value, ctx.out, str(ctx.device))
        future.add_done_callback(done)
        return future

    futures: dict[Spec, Future] = {}
    try:
        pilot = executor.submit(_pilot, plan, ctx.out)
        pilot.add_done_callback(lambda _: bar.update())
        # the clip value of a run that does not clip is never read; NaN makes that visible should it be
        futures.update({s: submit(s, math.nan) for s in specs if not _needs_pilot(s)})
        clip_value, pilot_norms = pilot.result()
        futures.update({s: submit(s, clip_value) for s in specs if _needs_pilot(s)})
        records = {s: futures[s].result() for s in specs}
    finally:
        executor.shutdown(wait=True, cancel_futures=True)  # on an error, queued runs are dropped, not trained
    result = SuiteResult("variants", {"plan": dataclasses.asdict(plan), "grad_clip": clip_value,
                                      "pilot_grad_norms": pilot_norms, "warmup_steps": plan.warmup_steps,
                                      "runs": len(specs), "training_device": "cpu", "jobs": ctx.jobs,
                                      "threads_per_job": threads or torch.get_num_threads()})
    result.notes += [
        f"{plan.config} at {plan.resolution}x{plan.resolution} on {plan.data}, batch {plan.batch_size}, "
        f"{plan.steps} steps, Adam lr {plan.lr}, no lr decay; {plan.seeds} seed(s). Main comparison and iteration "
        f"counts: gradient clipping at global L2 norm {clip_value:.4g} (the {plan.clip_quantile:.0%} quantile of an "
        f"unclipped {plan.pilot_steps}-step vanilla pilot's gradient norms) and linear warm-up over "
        f"{plan.warmup_steps} steps. Ablation: {'; '.join(plan.ablation_tricks)}.",
        f"Training ran on the CPU (device='cpu'), {ctx.jobs} run(s) at a time with "
        f"{threads or torch.get_num_threads()} torch thread(s) each; spectral radii on {ctx.device}."]
    result.tables["runs"] = Table(
        "One row per training run. grad_norm = global L2 norm before clipping (metrics.csv); clipped_frac = "
        "fraction of steps whose norm exceeded the clip; final_loss = mean training loss over the last 10% of "
        "steps; final_val_* = last validation (fixed batches); rho_*_final = spectral radius of the step's "
        "Jacobian at the last checkpoint (median over the fixed batch) at the model's T-th iterate (T) and at the "
        "converged fixed point (fp); diverged_at = step whose loss was not finite; seconds = wall time of the "
        "run (training and measurements; with --jobs > 1 runs share the cores).", RUN_COLUMNS)
    result.tables["trajectory"] = Table(
        "Measured after every training segment from the checkpoint, on a fixed validation batch: rho of "
        "J = d step / d slots at z_T (the model's own T iterations from fixed initial slots) and at the fixed "
        "point (Anderson, rel. tol 1e-5, at most 200 evaluations); residual_T = median ||f(z_T) - z_T|| / ||z_T||; "
        "fp_residual / fp_converged = the Anderson solve's median relative residual and converged fraction; "
        "val_mse / val_fg_ari = the validation at the segment's end (metrics.csv).",
        TRAJECTORY_COLUMNS, in_report=False)
    # thousands of per-step rows help nobody in markdown: results.json only
    result.tables["curves"] = Table("Every training step of every run (metrics.csv).", CURVE_COLUMNS, in_report=False)
    result.tables["summary"] = Table(
        "Means (and std) over seeds of the runs' final figures, per group; diverged runs are counted, not averaged.",
        SUMMARY_COLUMNS)
    for spec in specs:
        for name, rows in records[spec].items():
            for row in rows:
                result.tables[name].add(**row)
    _summary(result, specs)
    result.plots += _plots(result, specs, plan, clip_value, ctx.out)
    return result
