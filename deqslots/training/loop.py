"""The training loop of any registered model (the slot-attention autoencoder, SLATE), readable top to bottom.

``deqslots train ...`` builds a :class:`~deqslots.training.config.TrainConfig` from its flags and calls
:func:`train`. :func:`_train` is the whole loop as a sequence of named steps: set up the run, then per step set the
learning rates, take the loss, step the optimiser, log, evaluate and checkpoint, then summarise. The loop knows the
model only through its :class:`~deqslots.training.protocol.ModelKind` (``MODELS[config.model]``): loss and metrics
of a step, evaluation, figures, metric columns, optimiser and schedule.
Everything a run writes lands in ``config.out``: metrics.csv, checkpoint.pt, loss_curve.png, the kind's figures
(slots.png; SLATE: also ce_curve.png) and summary.json.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from ..data.batches import BatchStream
from ..evaluation.colour_control import colour_control
from ..evaluation.evaluate import evaluate
from ..evaluation.figures import plot_loss_curves
from .checkpoint import check_training_checkpoint, load_checkpoint, load_model_state, predated_settings, save_atomic
from .config import TrainConfig
from .distributed import DistContext, process_group
from .interrupts import StopRequests, TrainingInterrupted
from .metrics_log import MetricsLog
from .protocol import ModelKind
from .registry import kind_of, model_kind
from .schedule import Plateau
from .strict_json import dumps as strict_json

__all__ = ["train", "build_model", "rebuild_model", "write_figures", "TrainingInterrupted"]

# What a run folder holds, besides the kind's figures and summary.json
CHECKPOINT_FILE, METRICS_FILE = "checkpoint.pt", "metrics.csv"


def train(config: TrainConfig) -> dict:
    """Train (or resume) a run; returns the final validation metrics and timing.

    Launched by torchrun (``torchrun --nproc_per_node=N -m deqslots train ...``) every process runs this
    with its share of each global batch under DistributedDataParallel; rank 0 alone writes the run folder.
    Every rank returns the same summary.

    Args:
        config: the run; ``config.out`` receives metrics.csv, checkpoint.pt, loss_curve.png, the kind's figures
            and summary.json.

    Returns:
        The contents of summary.json: ``steps``, ``trained_steps`` (this call's), ``seconds``, ``steps_per_s``,
            ``skipped_nonfinite_steps``, the final validation metrics of the kind's ``evaluate`` (e.g. ``mse``,
            ``mse_sum``, ``fg_ari``; NaN where undefined, ``null`` in the file), the colour-only control where
            ``fg_ari`` is measured (``colour_fg_ari``, ``fg_ari_margin``), and ``world_size`` under torchrun.

    Raises:
        FileExistsError: when ``config.out`` already holds a checkpoint and ``config.resume`` is False.
        ValueError: on ``resume`` with settings that differ from the checkpoint's, or a checkpoint that is
            unreadable or not from ``deqslots train``; for a ``batch_size`` not divisible by the world size; or
            for an invalid ``device`` or torchrun environment.
        FloatingPointError: when the loss or gradient norm becomes non-finite and ``on_nonfinite="stop"``.
        TrainingInterrupted: after SIGINT / SIGTERM, once the step in progress is checkpointed.
        ImportError: for ``tensorboard=True`` without the tensorboard package.

    Examples:
        Two steps of a tiny model (about 10 s on a CPU, most of it the final evaluation and figures):

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as out:  # doctest: +SKIP
        ...     config = TrainConfig(data="shapes", resolution=16, num_slots=3, iters=2, batch_size=2, steps=2,
        ...                          eval_every=2, eval_batches=1, out=out, progress=False)
        ...     summary = train(config)
        ...     print(summary["trained_steps"], sorted(p.name for p in Path(out).iterdir()))
        2 ['checkpoint.pt', 'loss_curve.png', 'metrics.csv', 'slots.png', 'summary.json']
    """
    with process_group(config.device) as dist:
        return _train(config, dist)


def _train(config: TrainConfig, dist: DistContext) -> dict:
    """Start (or resume) the run; per step: learning rates, loss, the reduction over ranks, the optimiser step, the
    metrics.csv row, evaluation, checkpoint and a requested stop; then the summary."""
    run = _start(config, dist)
    kind, model = run.kind, run.model
    net = dist.wrap(model, find_unused_parameters=config.variant != "vanilla")
    amp = (torch.autocast(dist.device.type, dtype=torch.bfloat16) if config.precision == "bf16"
           else contextlib.nullcontext())
    writer = _tensorboard(run.out) if config.tensorboard and dist.is_main else None
    bar = tqdm(range(run.start, config.steps), initial=run.start, total=config.steps,
               disable=not (config.progress and dist.is_main), desc=f"{config.variant} {config.data}",
               dynamic_ncols=True)
    began = time.perf_counter()
    with StopRequests(absorb_repeats=dist.launched) as stop, \
            MetricsLog(run.metrics_path, kind.metric_columns, resume_at=run.start, enabled=dist.is_main) as log:
        for step in bar:
            lrs = _set_learning_rates(run, step)
            images = run.train_data.batch(step)["image"].to(dist.device, non_blocking=True)
            with amp:
                loss, extras = _train_loss(net, config, images, step)
            loss = loss.float()
            mean_loss, stop_signal = _reduce_over_ranks(run, loss, extras, stop)
            grad_norm = _optimizer_step(run, loss, mean_loss, step)

            row = {"step": step + 1, "loss": f"{float(mean_loss):.6g}", "grad_norm": f"{float(grad_norm):.6g}",
                   "elapsed_s": f"{time.perf_counter() - began:.3f}",
                   **{key: f"{value:.6g}" for key, value in {**lrs, **extras}.items()}}
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                row.update(_evaluate_and_update_plateau(run))
            log.write(row)
            if writer is not None:
                for key in kind.tensorboard_keys:
                    if key in row:
                        writer.add_scalar(key, float(row[key]), step + 1)

            if not dist.enabled:
                stop_signal = stop.signal  # one process: a signal that came during this step counts at once
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps or stop_signal:
                _save_checkpoint(run, step + 1)
            if stop_signal and step + 1 < config.steps:
                bar.close()
                dist.barrier()  # no rank exits (and makes torchrun kill the rest) before the checkpoint is in
                raise TrainingInterrupted(step + 1, stop_signal, run.out)
            bar.set_postfix(kind.progress(float(mean_loss), extras, run.last_eval))
    if writer is not None:
        writer.close()
    return _finish(run, time.perf_counter() - began)


@dataclass
class _Run:
    """What the steps of one run share: its config, processes, model and optimiser, data and progress."""

    config: TrainConfig
    dist: DistContext
    kind: ModelKind
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_data: BatchStream
    val_data: BatchStream
    out: Path
    start: int = 0
    plateau: Plateau = field(default_factory=lambda: Plateau(0))
    last_eval: dict = field(default_factory=dict)
    skipped: int = 0

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_FILE

    @property
    def metrics_path(self) -> Path:
        return self.out / METRICS_FILE


def _start(config: TrainConfig, dist: DistContext) -> _Run:
    """A new run, or the checkpointed one on ``--resume``: model, optimiser, data, step and RNG."""
    out = Path(config.out)
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.batch_size % dist.world_size:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the world size {dist.world_size}: "
                         f"each process takes an equal share of the global batch; pass a --batch-size that is a "
                         f"multiple of {dist.world_size} or start a number of processes that divides it")
    # Only rank 0 looks at the run folder (other machines may not share it); its outcome, an error included,
    # reaches every rank.
    state = dist.main_first(lambda: _prepare_run(config, out))

    # The seed fixes the initial weights; data depends only on (seed, step).
    torch.manual_seed(config.seed)
    kind = model_kind(config.model)
    model = kind.build(config).to(dist.device)
    res = model.config.resolution
    run = _Run(config, dist, kind, model, kind.optimizer(model, config),
               train_data=BatchStream(config.data, "train", res, config.batch_size, config.seed, rank=dist.rank,
                                      world_size=dist.world_size),
               val_data=BatchStream(config.data, "val", res, config.batch_size, config.seed),  # rank 0, whole batches
               out=out, plateau=Plateau(config.lr_plateau_patience))
    if state is not None:
        load_model_state(model, state, run.checkpoint_path)  # refuses another architecture by name, field by field
        run.optimizer.load_state_dict(state["optimizer"])  # moves its state to the parameters' device
        torch.set_rng_state(state["rng"])
        if dist.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], dist.device)
        run.start = int(state["step"])
        run.plateau = Plateau(config.lr_plateau_patience, **state.get("plateau", {}))
    else:
        dist.main_first(lambda: kind.initialise(model, config))  # e.g. SLATE's --stage slots loads its dVAE
    if dist.enabled:
        # Each rank draws the slot noise of the whole global batch and keeps its rows: same noise per sample
        # as one process, and the RNG stays identical on all ranks (and in the checkpoint).
        local = config.batch_size // dist.world_size
        for module in model.modules():
            if hasattr(module, "noise_shard"):  # slot attention's modules
                module.noise_shard = (dist.rank * local, config.batch_size)
    return run


def _set_learning_rates(run: _Run, step: int) -> dict[str, float]:
    """The kind's schedule at ``step``, times the plateau rule's factor; returns the rates for metrics.csv."""
    lrs = run.kind.set_learning_rates(run.optimizer, run.config, step)
    if run.plateau.factor != 1.0:
        for group in run.optimizer.param_groups:
            group["lr"] *= run.plateau.factor
        lrs = {key: value * run.plateau.factor for key, value in lrs.items()}
    return lrs


def _train_loss(model: torch.nn.Module, config: TrainConfig, images: torch.Tensor, step: int
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss to minimise and the kind's metrics.csv entries for this step (:meth:`ModelKind.loss`)."""
    return model_kind(config.model).loss(model, config, images, step)


def _reduce_over_ranks(run: _Run, loss: torch.Tensor, extras: dict[str, float], stop: StopRequests
                       ) -> tuple[torch.Tensor, int]:
    """The loss averaged over ranks (``extras`` averaged in place) and the stop signal every rank agrees on.

    One all-reduce per step: the ranks' losses (a NaN anywhere makes every rank skip backward alike, so DDP never
    waits for a rank that skipped), the kind's batch averages, and stop requests (every rank stops after the same
    step). One process: the loss itself, and no signal yet (the loop reads it after the step).
    """
    dist = run.dist
    if not dist.enabled:
        return loss.detach(), 0
    keys = run.kind.shared_metrics
    shared = dist.all_reduce_sum(torch.stack([
        loss.detach(), *[torch.tensor(float(extras[k]), device=loss.device) for k in keys],
        torch.tensor(float(stop.signal == signal.SIGINT), device=loss.device),
        torch.tensor(float(stop.signal == signal.SIGTERM), device=loss.device)]))
    extras.update({k: float(shared[1 + i]) / dist.world_size for i, k in enumerate(keys)})
    stop_signal = signal.SIGTERM if shared[-1] else signal.SIGINT if shared[-2] else 0
    return shared[0] / dist.world_size, stop_signal


def _optimizer_step(run: _Run, loss: torch.Tensor, mean_loss: torch.Tensor, step: int) -> torch.Tensor:
    """Backward, clip and step, unless the loss or gradient is not finite; returns the gradient norm.

    Gradients are averaged over ranks and the loss is a mean over each rank's equal share, so the average is the
    gradient of the global batch's mean loss, and the norm is the same on every rank.
    """
    config = run.config
    run.optimizer.zero_grad(set_to_none=True)
    grad_norm = torch.tensor(math.nan)
    if torch.isfinite(mean_loss):
        loss.backward()
        norm_type = math.inf if config.grad_clip_type == "inf" else 2.0
        grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip or math.inf,
                                                   norm_type).cpu()
    if torch.isfinite(grad_norm):
        run.optimizer.step()
    elif config.on_nonfinite == "skip":
        run.skipped += 1  # no update; metrics.csv records the non-finite loss / gradient norm
    else:
        raise FloatingPointError(
            f"{'loss' if not torch.isfinite(mean_loss) else 'gradient norm'} became non-finite at step "
            f"{step}; the last checkpoint in {run.out} is intact. Try --grad-clip 1.0, a warm-up, a lower "
            "--lr, an implicit variant (IN), or --on-nonfinite skip to skip such steps."
        )
    return grad_norm


def _evaluate_and_update_plateau(run: _Run) -> dict[str, str]:
    """Validation metrics (rank 0 evaluates) as metrics.csv entries, counted by the plateau rule on every rank."""
    entries: dict[str, str] = {}
    if run.dist.is_main:
        run.last_eval = evaluate(run.model, run.val_data, run.config.eval_batches, seed=run.config.seed)
        entries = {col: f"{run.last_eval[col[4:]]:.6g}" for col in run.kind.metric_columns
                   if col.startswith("val_") and col[4:] in run.last_eval}
        run.plateau.update(run.kind.plateau_loss(run.last_eval))
    if run.plateau.patience and run.dist.enabled:
        run.plateau = Plateau(run.plateau.patience, **run.dist.broadcast_object(run.plateau.state()))
    return entries


def _save_checkpoint(run: _Run, step: int) -> None:
    """Everything a resumed run needs, written atomically by rank 0, on the CPU so any machine can load it."""
    if not run.dist.is_main:
        return
    device = run.dist.device
    checkpoint = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(), "step": step,
                  "rng": torch.get_rng_state(), "train_config": dataclasses.asdict(run.config),
                  "model_config": run.kind.config_record(run.model), "format": 1, "plateau": run.plateau.state(),
                  "world_size": run.dist.world_size, "device": str(device)}
    if device.type == "cuda":
        checkpoint["cuda_rng"] = torch.cuda.get_rng_state(device)
    save_atomic(_to_cpu(checkpoint), run.checkpoint_path)


def _finish(run: _Run, elapsed: float) -> dict:
    """Rank 0's final evaluation, colour control, figures and summary.json; every rank returns the summary."""
    config, summary = run.config, None
    if run.dist.is_main:
        final = dict(run.last_eval or evaluate(run.model, run.val_data, config.eval_batches, seed=config.seed))
        if "fg_ari" in final:
            # the colour-only control on the same validation images, once per run (k-means is slow)
            final.update(colour_control(run.val_data, config.eval_batches, config.seed, final["fg_ari"]))
        write_figures(run.model, run.val_data, run.metrics_path, run.out, config.seed)
        trained = config.steps - run.start
        summary = {"steps": config.steps, "trained_steps": trained, "seconds": round(elapsed, 2),
                   "steps_per_s": round(trained / elapsed, 3) if elapsed > 0 else None,
                   "skipped_nonfinite_steps": run.skipped, **final}
        if run.dist.enabled:
            summary.update(world_size=run.dist.world_size)
        (run.out / "summary.json").write_text(strict_json(summary, indent=2))  # NaN FG-ARI -> null
    return run.dist.broadcast_object(summary)


def _prepare_run(config: TrainConfig, out: Path) -> Optional[dict]:
    """Check the run folder and read the checkpoint to resume from (rank 0's job); None for a new run."""
    ckpt_path = out / CHECKPOINT_FILE
    out.mkdir(parents=True, exist_ok=True)
    if ckpt_path.exists() and not config.resume:
        raise FileExistsError(
            f"{out} already holds a run (checkpoint.pt); pass --resume to continue it or choose another --out"
        )
    if config.resume and not ckpt_path.exists():
        # not an error: a scheduler restarts a job with the same command (--resume included), also one killed
        # before its first checkpoint; but a mistyped --out must not go unnoticed
        print(f"deqslots train: --resume: no checkpoint in {out} yet; starting a new run there", file=sys.stderr)
        return None
    if not config.resume:
        return None
    state = load_checkpoint(ckpt_path)
    check_training_checkpoint(state, ckpt_path)
    differences = _same_run(state["train_config"], config, state.get("model_config"))
    if differences:
        raise ValueError("--resume with different settings than the checkpoint: " + "; ".join(differences))
    return state


def _same_run(saved: dict, config: TrainConfig, model_config: Optional[dict] = None) -> list[str]:
    """Fields that define the run and differ between a checkpoint and the requested config.

    An architecture flag the run left to its config (None in the checkpoint's train config) matches the value
    the model was built with (``model_config``): ``--resume --iters 7`` continues a run that used the default 7.
    """
    defining = ("model", "variant", "data", "config", "config_set", "resolution", "iters", "num_slots", "batch_size",
                "seed", "lr", "warmup_steps", "decay_steps", "grad_clip", "vocab_size", "dvae_lr", "grad_clip_type",
                "tau_start", "tau_final", "tau_steps", "stage", "lr_plateau_patience")
    # device, precision, threads and the world size are left out: where and on how many processes a run
    # continues does not change what it computes (the checkpoint holds the global batch size)
    now = dataclasses.asdict(config)
    saved = dict(saved)
    for name in ("resolution", "iters", "num_slots"):
        if saved.get(name) is None and now[name] is not None and (model_config or {}).get(name) == now[name]:
            saved[name] = now[name]
    # a field a checkpoint predates (added since) counts as matching
    return [f"{k}: checkpoint {saved.get(k)!r} vs now {now[k]!r}" for k in defining if saved.get(k, now[k]) != now[k]]


def _to_cpu(obj):
    """A copy of a (nested) state with every tensor on the CPU, so any machine can load the checkpoint."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def build_model(config: TrainConfig) -> torch.nn.Module:
    """The model a config describes, e.g. a :class:`deqslots.SlotAutoencoder` or a :class:`deqslots.SLATE`.

    Args:
        config: the run's settings (its ``model`` kind, named ``config`` and architecture overrides).

    Returns:
        A freshly initialised model on the CPU (seed torch first for reproducible weights).

    Examples:
        >>> config = TrainConfig(data="shapes", resolution=16, num_slots=3)
        >>> model = build_model(config)
        >>> type(model).__name__, model.config.resolution, model.config.num_slots, model.config.variant
        ('SlotAutoencoder', 16, 3, 'IN')
        >>> type(build_model(TrainConfig(model="slate", resolution=16))).__name__
        'SLATE'
    """
    return model_kind(config.model).build(config)


def rebuild_model(state: dict, path: Path | str, num_slots: Optional[int] = None
                  ) -> tuple[TrainConfig, torch.nn.Module]:
    """The trained model of a checkpoint ``state`` (read from ``path``), with its weights, and its train config.

    Built from the recorded ``train_config`` with ``resume=True`` (the trained architecture, not a new run: a
    SLATE slots run then needs no --dvae folder). ``num_slots`` builds it with another slot count (slot
    attention's weights do not depend on it; refused for learned initial slots, one vector per slot).

    Args:
        state: a checkpoint of ``deqslots train`` (:func:`~deqslots.training.checkpoint.load_checkpoint`):
            ``train_config``, ``model`` and, usually, ``model_config``.
        path: where ``state`` was read from (for the messages).
        num_slots: build with this many slots instead of the trained count; None = the trained count.

    Returns:
        The train config (``resume=True``; architecture fields the checkpoint predates added to ``config_set``
            at their ``LEGACY`` values) and the model with the checkpoint's weights, on the CPU.

    Raises:
        ValueError: for settings this version does not know, learned initial slots with ``num_slots``, or
            weights that do not fit the recorded architecture.

    Examples:
        >>> import dataclasses, torch
        >>> _ = torch.manual_seed(0)
        >>> trained = build_model(TrainConfig(data="shapes", resolution=16, num_slots=3))
        >>> state = {"train_config": dataclasses.asdict(TrainConfig(data="shapes", resolution=16, num_slots=3)),
        ...          "model": trained.state_dict(), "model_config": dataclasses.asdict(trained.config)}
        >>> config, model = rebuild_model(state, "run/checkpoint.pt")  # usually state = load_checkpoint(path)
        >>> config.resume, model.config.num_slots
        (True, 3)
        >>> all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))
        True
        >>> rebuild_model(state, "run/checkpoint.pt", num_slots=6)[1].config.num_slots
        6
    """
    saved = state["train_config"]
    unknown = sorted(set(saved) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise ValueError(f"{path} has settings this version does not know ({', '.join(unknown)}); use the "
                         "deqslots version that trained it")
    overrides: dict = {"resume": True}
    if num_slots is not None:
        overrides["num_slots"] = num_slots
    config = _with_predated_fields(TrainConfig(**{**saved, **overrides}), state)
    model = build_model(config)
    if num_slots is not None and getattr(model.config, "slot_init", "gaussian") == "learned":
        raise ValueError(f"{path} was trained with learned initial slots (slot_init=learned): one vector per slot, "
                         f"so it runs with {saved.get('num_slots') or 'its'} slots only; drop --num-slots")
    load_model_state(model, state, path, may_differ=("num_slots",) if num_slots is not None else ())
    return config, model


def _with_predated_fields(config: TrainConfig, state: dict) -> TrainConfig:
    """``config`` with ``--set`` entries for the architecture fields the checkpoint ``state`` predates.

    A model saved before a field of its config class existed was trained with the class's ``LEGACY`` value for it
    (``SLATEConfig.LEGACY``, ``AutoencoderConfig.LEGACY``), whatever the named config's default is now: a shipped
    ``cpu-slate`` model of November 2026 rebuilds with the architecture it was trained with.
    """
    recorded = state.get("model_config")
    missing = predated_settings(config.model_config(), recorded) if isinstance(recorded, dict) else ""
    if not missing:
        return config
    return dataclasses.replace(config, config_set=f"{config.config_set},{missing}" if config.config_set else missing)


@torch.no_grad()
def write_figures(model: torch.nn.Module, data: BatchStream, metrics_path: Path, out: Path, seed: int) -> None:
    """loss_curve.png from metrics.csv, then the model kind's own figures (:meth:`ModelKind.figures`).

    Slot attention: slots.png (input, reconstruction, per-slot masks). SLATE: ce_curve.png, and slots.png
    with the input, the dVAE's own reconstruction, the reconstruction through the slots and the slots'
    attention masks (the paper's Figure 4 layout).

    Args:
        model: the (unwrapped) trained model of a registered kind.
        data: the validation batches to draw.
        metrics_path: the run's metrics.csv (needs its ``step`` and ``loss`` columns).
        out: the folder the PNG files are written into.
        seed: seed of the slot noise.

    Raises:
        ValueError: when ``model`` is of no registered kind.

    Examples:
        A few seconds, most of it matplotlib:

        >>> import tempfile
        >>> from deqslots.data.batches import BatchStream
        >>> model = build_model(TrainConfig(data="shapes", resolution=16, num_slots=3))
        >>> with tempfile.TemporaryDirectory() as tmp:  # doctest: +SKIP
        ...     out = Path(tmp)
        ...     _ = (out / "metrics.csv").write_text("step,loss\\n1,0.5\\n2,0.4\\n")
        ...     write_figures(model, BatchStream("shapes", "val", 16, 2, 0), out / "metrics.csv", out, seed=0)
        ...     print(sorted(p.name for p in out.iterdir()))
        ['loss_curve.png', 'metrics.csv', 'slots.png']
    """
    plot_loss_curves({"train loss": metrics_path}, out / "loss_curve.png")
    kind_of(model).figures(model, data, metrics_path, out, seed)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard") from err
    return SummaryWriter(str(out / "tensorboard"))
