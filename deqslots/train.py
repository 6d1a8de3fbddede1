"""Training of any registered model (the slot-attention autoencoder, SLATE), readable top to bottom.

``deqslots train ...`` builds a :class:`TrainConfig` from its flags and calls :func:`train`. The loop knows
the model only through its :class:`deqslots.protocol.ModelKind` (``deqslots.models.MODELS[config.model]``):
loss and metrics of a step, evaluation, figures, metric columns, optimiser and schedule.
Everything a run writes lands in ``config.out``: metrics.csv, checkpoint.pt, loss_curve.png, the kind's
figures (slots.png; SLATE: also ce_curve.png) and summary.json.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from ._json import dumps as strict_json
from .batches import BatchStream
from .checkpoint import (check_training_checkpoint, load_checkpoint, load_model_state, predated_settings,
                         save_atomic)
from .distributed import DEVICES, DistContext, process_group
from .evaluate import colour_control, evaluate
from .figures import plot_loss_curves
from .models import MODELS, kind_of, model_kind
from .slate import cosine_anneal
from .slot_attention import VARIANTS, SlotAttention

__all__ = ["TrainConfig", "train", "build_model", "TrainingInterrupted", "Plateau", "METRIC_COLUMNS",
           "SLATE_METRIC_COLUMNS", "PRECISIONS"]

# The two shipped kinds' metrics.csv headers, under their historical names (each kind holds its own).
METRIC_COLUMNS = MODELS["slot-attention"].metric_columns
SLATE_METRIC_COLUMNS = MODELS["slate"].metric_columns
PRECISIONS = ("fp32", "bf16")


# What a field left None becomes when neither the named config's recipe nor the model's defaults set it.
_GLOBAL_DEFAULTS = dict(steps=1000, batch_size=32, eval_every=200, eval_batches=4, lr_plateau_patience=0)


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in the checkpoint).

    Fields left None take the named config's recipe first (``deqslots.autoencoder.RECIPES``: ``cpu-small`` and
    ``cpu-objects`` carry the CPU recipe they were measured with: batch 16, Adam 6e-4, warm-up 200, no decay,
    their step budgets; the ``paper-*`` configs their authors' recipes, and so do SLATE's in
    ``deqslots.slate.SLATE_RECIPES``), then the model's (its kind's ``defaults``): Slot Attention's for
    "slot-attention", SLATE's for "slate"; then steps 1000, batch 32, evaluation every 200 steps on 4 batches.

    Attributes:
        model: a name in ``deqslots.models.MODELS``: "slot-attention" | "slate".
        variant: "vanilla" | "IN" | "BN" | "BB" | "IB".
        data: a procedural data set (shapes, clevr-mirror, stacks, same-hue), folder:PATH or hdf5:PATH.
        config: named architecture (``deqslots.CONFIGS`` or, for SLATE, ``deqslots.SLATE_CONFIGS``).
        config_set: other fields of the named architecture to change, ``FIELD=VALUE,FIELD=VALUE`` (``--set``),
            e.g. ``decoder_position_frequencies=3,attention_guidance_steps=5000``.
        resolution, iters, num_slots: override the named architecture's values when set.
        vocab_size: SLATE only: override the dVAE vocabulary.
        stage: SLATE only: "joint" (default: everything at once, as SLATE), "dvae" (the dVAE alone) or
            "slots" (slot attention and the decoder on the frozen tokens of the dVAE in ``dvae``).
        dvae: SLATE only, with ``stage="slots"``: the run folder whose dVAE is loaded and frozen.
        steps: optimisation steps in total (a resumed run continues up to it).
        batch_size, seed: as usual; the seed fixes initialisation, data and slot noise.
        lr: peak Adam learning rate; None = 4e-4 (Slot Attention) or 1e-4 (SLATE, all but the dVAE).
        dvae_lr: SLATE only: the dVAE's learning rate (no warm-up); None = 3e-4.
        warmup_steps: linear warm-up of ``lr``; None = min(10000, steps // 10) (SLATE: min(30000, steps // 10));
            0 = off.
        decay_steps: lr halves every ``decay_steps``; None = 100000 (Slot Attention) or off (SLATE); 0 = off.
        grad_clip: clip the global gradient norm to this; 0 = off; None = off (Slot Attention) or 1.0 (SLATE).
        grad_clip_type: "l2" or "inf" (the largest absolute gradient entry, as SLATE's code clips);
            None = "l2" (Slot Attention) or "inf" (SLATE).
        tau_start, tau_final, tau_steps: SLATE's Gumbel-softmax temperature, cosine-annealed from start to
            final over ``tau_steps``; None = min(30000, steps // 2); 0 = constant ``tau_start``. (Defaults that
            follow ``steps`` change if a resumed run is given more steps: pass them explicitly to extend a run.)
        lr_plateau_patience: halve every learning rate after this many periodic evaluations in a row without a
            lower validation loss (the kind's :meth:`~deqslots.protocol.ModelKind.plateau_loss`; SLATE's recipe:
            4 epochs); 0 = off; None = the named config's recipe, else off.
        eval_every, eval_batches: periodic validation (MSE, FG-ARI) on fixed batches.
        checkpoint_every: steps between atomic checkpoints (and one at the end).
        out: run folder. resume: continue from ``out/checkpoint.pt``.
        tensorboard: also log to TensorBoard (needs the tensorboard package).
        threads: torch CPU threads (None = torch's default).
        progress: show a tqdm bar.
        on_nonfinite: a NaN/Inf loss or gradient either "stop"s training with an error (the last
            checkpoint stays intact) or is "skip"ped: no parameter update, counted in summary.json.
        device: "auto" (CUDA when available), "cpu" or "cuda"; under torchrun each process takes GPU
            LOCAL_RANK. Not part of the run's identity: a run may resume on another device.
        precision: "fp32", or "bf16" for the training forward under ``torch.autocast`` with bfloat16
            (weights, optimiser and the solvers' own arithmetic stay float32; validation runs in float32).
            Not part of the run's identity either.
    """

    model: str = "slot-attention"
    variant: str = "IN"
    data: str = "clevr-mirror"
    config: str = "cpu-small"
    config_set: str = ""
    resolution: Optional[int] = None
    iters: Optional[int] = None
    num_slots: Optional[int] = None
    vocab_size: Optional[int] = None
    stage: Optional[str] = None
    dvae: Optional[str] = None
    steps: Optional[int] = None
    batch_size: Optional[int] = None
    seed: int = 0
    lr: Optional[float] = None
    dvae_lr: Optional[float] = None
    warmup_steps: Optional[int] = None
    decay_steps: Optional[int] = None
    grad_clip: Optional[float] = None
    grad_clip_type: Optional[str] = None
    tau_start: float = 1.0
    tau_final: float = 0.1
    tau_steps: Optional[int] = None
    lr_plateau_patience: Optional[int] = None
    eval_every: Optional[int] = None
    eval_batches: Optional[int] = None
    checkpoint_every: int = 200
    out: str = "runs/train"
    resume: bool = False
    tensorboard: bool = False
    threads: Optional[int] = None
    progress: bool = True
    on_nonfinite: str = "stop"
    device: str = "auto"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip'; got {self.on_nonfinite!r}")
        kind = model_kind(self.model)  # refuses an unknown name, listing the known ones
        # The named config's recipe, then the global defaults, for what was not given; resolved here so that
        # checkpoints record (and resume compares) concrete values.
        recipe = kind.recipes.get(self.config, {})
        for name, value in {**_GLOBAL_DEFAULTS, **recipe}.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {self.variant!r}")
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        for name in ("warmup_steps", "decay_steps", "lr_plateau_patience"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be an integer >= 0 (0 = off), or None for the model's default; "
                                 f"got {value!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 0):
            raise ValueError(f"threads must be a positive integer (0 or None: torch's default); got {self.threads!r}")
        # Resolve the model's recipe now, so checkpoints record (and resume compares) concrete values.
        defaults = kind.defaults
        for other in MODELS.values():
            for name in other.settings:
                if name not in kind.settings and getattr(self, name) is not None:
                    raise ValueError(f"{name} is a {other.title} setting; use it with model={other.name!r} "
                                     f"(--model {other.name})")
        for name in ("lr", "grad_clip", *kind.settings):
            if getattr(self, name) is None and name in defaults:
                setattr(self, name, defaults[name])
        self.grad_clip_type = self.grad_clip_type or defaults["grad_clip_type"]
        for name in ("lr", "dvae_lr"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0; got {value}")
        if self.grad_clip is not None and not self.grad_clip >= 0:
            raise ValueError(f"grad_clip must be > 0 to clip, 0 for off, or None for the model's default; "
                             f"got {self.grad_clip}")
        if self.grad_clip_type not in ("l2", "inf"):
            raise ValueError(f"grad_clip_type must be 'l2' or 'inf'; got {self.grad_clip_type!r}")
        if not (self.tau_start > 0 and self.tau_final > 0):
            raise ValueError(f"tau_start and tau_final must be > 0; got {self.tau_start}, {self.tau_final}")
        if self.tau_steps is not None and (isinstance(self.tau_steps, bool) or self.tau_steps < 0):
            raise ValueError(f"tau_steps must be >= 0 (0 = constant tau_start) or None; got {self.tau_steps}")
        if self.config_set:  # a misspelt field is an error now, not after the data is opened
            try:
                kind.model_config(self)
            except TypeError as err:
                raise ValueError(f"--set {self.config_set}: {err}") from None
        kind.validate(self)

    @property
    def warmup(self) -> int:
        cap = model_kind(self.model).defaults["warmup_cap"]
        return min(cap, self.steps // 10) if self.warmup_steps is None else self.warmup_steps

    @property
    def decay(self) -> int:
        return model_kind(self.model).defaults["decay"] if self.decay_steps is None else self.decay_steps

    @property
    def tau_anneal(self) -> int:
        """Steps of the temperature annealing (SLATE)."""
        return min(30_000, self.steps // 2) if self.tau_steps is None else self.tau_steps

    def tau(self, step: int) -> float:
        """SLATE's Gumbel-softmax temperature at 0-based ``step``."""
        return cosine_anneal(step, self.tau_start, self.tau_final, self.tau_anneal)

    def model_config(self):
        """The architecture this run trains (its kind's config dataclass)."""
        return model_kind(self.model).model_config(self)


def build_model(config: TrainConfig) -> torch.nn.Module:
    """The model a config describes, e.g. a :class:`deqslots.SlotAutoencoder` or a :class:`deqslots.SLATE`."""
    return model_kind(config.model).build(config)


def rebuild_model(state: dict, path: Path | str, num_slots: Optional[int] = None
                  ) -> tuple[TrainConfig, torch.nn.Module]:
    """The trained model of a checkpoint ``state`` (read from ``path``), with its weights, and its train config.

    Built from the recorded ``train_config`` with ``resume=True`` (the trained architecture, not a new run: a
    SLATE slots run then needs no --dvae folder). ``num_slots`` builds it with another slot count (slot
    attention's weights do not depend on it; refused for learned initial slots, one vector per slot).

    Raises:
        ValueError: for settings this version does not know, learned initial slots with ``num_slots``, or
            weights that do not fit the recorded architecture.
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


def _train_loss(model: torch.nn.Module, config: TrainConfig, images: torch.Tensor, step: int
                ) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss to minimise and the kind's metrics.csv entries for this step (:meth:`ModelKind.loss`)."""
    return model_kind(config.model).loss(model, config, images, step)


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


def _open_metrics(path: Path, keep_until: Optional[int], columns: list[str]) -> None:
    """Start metrics.csv, or on resume drop rows logged after the checkpoint (they will be redone)."""
    rows = []
    if keep_until is not None and path.exists():
        with open(path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= keep_until]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def train(config: TrainConfig) -> dict:
    """Train (or resume) a run; returns the final validation metrics and timing.

    Launched by torchrun (``torchrun --nproc_per_node=N -m deqslots train ...``) every process runs this
    with its share of each global batch under DistributedDataParallel; rank 0 alone writes the run folder.
    Every rank returns the same summary.
    """
    with process_group(config.device) as dist:
        return _train(config, dist)


def _prepare_run(config: TrainConfig, out: Path, ckpt_path: Path) -> Optional[dict]:
    """Check the run folder and read the checkpoint to resume from (rank 0's job); None for a new run."""
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


def _to_cpu(obj):
    """A copy of a (nested) state with every tensor on the CPU, so any machine can load the checkpoint."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _train(config: TrainConfig, dist: DistContext) -> dict:
    out = Path(config.out)
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.csv"
    if config.threads:
        torch.set_num_threads(config.threads)
    if config.batch_size % dist.world_size:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the world size {dist.world_size}: "
                         f"each process takes an equal share of the global batch; pass a --batch-size that is a "
                         f"multiple of {dist.world_size} or start a number of processes that divides it")
    # Only rank 0 looks at the run folder (other machines may not share it); its outcome, an error included,
    # reaches every rank.
    state = dist.main_first(lambda: _prepare_run(config, out, ckpt_path))
    device, main = dist.device, dist.is_main

    # Model, optimiser and data. The seed fixes the initial weights; data depends only on (seed, step).
    torch.manual_seed(config.seed)
    kind = model_kind(config.model)
    model = kind.build(config).to(device)
    optimizer = kind.optimizer(model, config)
    columns = kind.metric_columns
    res = model.config.resolution
    train_data = BatchStream(config.data, "train", res, config.batch_size, config.seed, rank=dist.rank,
                             world_size=dist.world_size)
    val_data = BatchStream(config.data, "val", res, config.batch_size, config.seed)  # rank 0, whole batches

    start = 0
    plateau = Plateau(config.lr_plateau_patience)
    if state is not None:
        load_model_state(model, state, ckpt_path)  # refuses another architecture by name, field by field
        optimizer.load_state_dict(state["optimizer"])  # moves its state to the parameters' device
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        start = int(state["step"])
        plateau = Plateau(config.lr_plateau_patience, **state.get("plateau", {}))
    else:
        dist.main_first(lambda: kind.initialise(model, config))  # e.g. SLATE's --stage slots loads its dVAE
    if dist.enabled:
        # Each rank draws the slot noise of the whole global batch and keeps its rows: same noise per sample
        # as one process, and the RNG stays identical on all ranks (and in the checkpoint).
        local = config.batch_size // dist.world_size
        for module in model.modules():
            if isinstance(module, SlotAttention):
                module.noise_shard = (dist.rank * local, config.batch_size)
    # Gradients are averaged over ranks; the loss is a mean over each rank's equal share, so the average is
    # the gradient of the global batch's mean loss. Under the implicit variants the initial-slot mean and
    # sigma get no gradient, which DDP must be told to expect.
    net = dist.wrap(model, find_unused_parameters=config.variant != "vanilla")
    amp = (torch.autocast(device.type, dtype=torch.bfloat16) if config.precision == "bf16"
           else contextlib.nullcontext())
    if main:
        _open_metrics(metrics_path, keep_until=start if start else None, columns=columns)
    writer = _tensorboard(out) if config.tensorboard and main else None

    def save(step: int) -> None:
        checkpoint = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                      "rng": torch.get_rng_state(), "train_config": dataclasses.asdict(config),
                      "model_config": kind.config_record(model), "format": 1, "plateau": plateau.state(),
                      "world_size": dist.world_size, "device": str(device)}
        if device.type == "cuda":
            checkpoint["cuda_rng"] = torch.cuda.get_rng_state(device)
        save_atomic(_to_cpu(checkpoint), ckpt_path)

    bar = tqdm(range(start, config.steps), initial=start, total=config.steps,
               disable=not (config.progress and main), desc=f"{config.variant} {config.data}", dynamic_ncols=True)
    began = time.perf_counter()
    last_eval: dict = {}
    skipped = 0
    extra_keys = kind.shared_metrics
    with _StopRequests(absorb_repeats=dist.launched) as stop, \
            (open(metrics_path, "a", newline="") if main else contextlib.nullcontext()) as handle:
        log = csv.DictWriter(handle, columns) if main else None
        for step in bar:
            lrs = kind.set_learning_rates(optimizer, config, step)
            if plateau.factor != 1.0:
                for group in optimizer.param_groups:
                    group["lr"] *= plateau.factor
                lrs = {key: value * plateau.factor for key, value in lrs.items()}
            images = train_data.batch(step)["image"].to(device, non_blocking=True)
            with amp:
                loss, extras = _train_loss(net, config, images, step)
            loss = loss.float()
            stop_signal = 0
            if dist.enabled:
                # One all-reduce per step: the ranks' losses (a NaN anywhere makes every rank skip backward
                # alike, so DDP never waits for a rank that skipped), the kind's batch averages, and stop requests
                # (every rank stops after the same step).
                shared = dist.all_reduce_sum(torch.stack([
                    loss.detach(), *[torch.tensor(float(extras[k]), device=loss.device) for k in extra_keys],
                    torch.tensor(float(stop.signal == signal.SIGINT), device=loss.device),
                    torch.tensor(float(stop.signal == signal.SIGTERM), device=loss.device)]))
                mean_loss = shared[0] / dist.world_size
                extras.update({k: float(shared[1 + i]) / dist.world_size for i, k in enumerate(extra_keys)})
                stop_signal = signal.SIGTERM if shared[-1] else signal.SIGINT if shared[-2] else 0
            else:
                mean_loss = loss.detach()
            optimizer.zero_grad(set_to_none=True)
            grad_norm = torch.tensor(math.nan)
            if torch.isfinite(mean_loss):
                loss.backward()
                norm_type = math.inf if config.grad_clip_type == "inf" else 2.0
                # after backward the gradients are the average over ranks: the same norm on every rank
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or math.inf,
                                                           norm_type).cpu()
            if torch.isfinite(grad_norm):
                optimizer.step()
            elif config.on_nonfinite == "skip":
                skipped += 1  # no update; the row below records the non-finite loss / gradient norm
            else:
                raise FloatingPointError(
                    f"{'loss' if not torch.isfinite(mean_loss) else 'gradient norm'} became non-finite at step "
                    f"{step}; the last checkpoint in {out} is intact. Try --grad-clip 1.0, a warm-up, a lower "
                    "--lr, an implicit variant (IN), or --on-nonfinite skip to skip such steps."
                )

            row = {"step": step + 1, "loss": f"{float(mean_loss):.6g}", "grad_norm": f"{float(grad_norm):.6g}",
                   "elapsed_s": f"{time.perf_counter() - began:.3f}",
                   **{key: f"{value:.6g}" for key, value in {**lrs, **extras}.items()}}
            evaluating = (step + 1) % config.eval_every == 0 or step + 1 == config.steps
            if main and evaluating:
                last_eval = evaluate(model, val_data, config.eval_batches, seed=config.seed)
                row.update({col: f"{last_eval[col[4:]]:.6g}" for col in columns
                            if col.startswith("val_") and col[4:] in last_eval})
                plateau.update(kind.plateau_loss(last_eval))
            if evaluating and plateau.patience and dist.enabled:
                plateau = Plateau(plateau.patience, **dist.broadcast_object(plateau.state()))  # rank 0 evaluated
            if main:
                log.writerow(row)
                handle.flush()  # one small write per step: the file is current for anyone watching it
            if writer is not None:
                for key in kind.tensorboard_keys:
                    if key in row:
                        writer.add_scalar(key, float(row[key]), step + 1)
            if not dist.enabled:
                stop_signal = stop.signal  # one process: a signal that came during this step counts at once
            if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps or stop_signal:
                if main:
                    save(step + 1)
            if stop_signal and step + 1 < config.steps:
                bar.close()
                dist.barrier()  # no rank exits (and makes torchrun kill the rest) before the checkpoint is in
                raise TrainingInterrupted(step + 1, stop_signal, out)
            bar.set_postfix(kind.progress(float(mean_loss), extras, last_eval))
    if writer is not None:
        writer.close()

    elapsed = time.perf_counter() - began
    summary = None
    if main:
        final = dict(last_eval or evaluate(model, val_data, config.eval_batches, seed=config.seed))
        if "fg_ari" in final:
            # the colour-only control on the same validation images, once per run (k-means is slow)
            final.update(colour_control(val_data, config.eval_batches, config.seed, final["fg_ari"]))
        write_figures(model, val_data, metrics_path, out, config.seed)
        summary = {"steps": config.steps, "trained_steps": config.steps - start, "seconds": round(elapsed, 2),
                   "steps_per_s": round((config.steps - start) / elapsed, 3) if elapsed > 0 else None,
                   "skipped_nonfinite_steps": skipped, **final}
        if dist.enabled:
            summary.update(world_size=dist.world_size)
        (out / "summary.json").write_text(strict_json(summary, indent=2))  # NaN FG-ARI -> null
    return dist.broadcast_object(summary)


class Plateau:
    """SLATE's learning-rate rule: every rate halves after ``patience`` evaluations in a row without a new best
    validation loss (its train.py counts epochs); ``patience`` 0 = never. Its state goes into checkpoints.

    Examples:
        >>> rule = Plateau(2)
        >>> for loss in (3.0, 2.0, 2.5, 2.1, 1.0, 1.5, 1.5):
        ...     rule.update(loss)
        >>> rule.factor, rule.best
        (0.25, 1.0)
    """

    def __init__(self, patience: int, best: float = math.inf, stale: int = 0, factor: float = 1.0) -> None:
        self.patience, self.best, self.stale, self.factor = patience, best, stale, factor

    def update(self, loss: float) -> None:
        """Count one evaluation's loss (NaN counts as no improvement)."""
        if not self.patience:
            return
        if loss < self.best:
            self.best, self.stale = loss, 0
            return
        self.stale += 1
        if self.stale >= self.patience:
            self.factor, self.stale = self.factor / 2.0, 0

    def state(self) -> dict[str, float]:
        return {"best": self.best, "stale": self.stale, "factor": self.factor}


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived: the step in progress was finished and checkpointed, then training stopped."""

    def __init__(self, step: int, signum: int, out: Path) -> None:
        self.step, self.signum = step, signum
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved in {out}. "
                         f"Continue with the same command and --resume.")


class _StopRequests:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so a stop never leaves a half-done step.

    A second signal of the same kind gets the default behaviour (e.g. Ctrl-C twice interrupts at once).
    Handlers can only be installed from the main thread; elsewhere signals keep their default behaviour.

    Args:
        absorb_repeats: ignore signals after the first (under torchrun, which forwards the signal it gets
            to its workers, so a terminal's Ctrl-C reaches each worker twice; torchrun kills workers still
            running after its --shutdown-timeout).
    """

    def __init__(self, absorb_repeats: bool = False) -> None:
        self.signal = 0
        self.absorb_repeats = absorb_repeats
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        if self.signal and self.absorb_repeats:
            return
        if self.signal:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
        self.signal = signum

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@torch.no_grad()
def write_figures(model: torch.nn.Module, data: BatchStream, metrics_path: Path, out: Path, seed: int) -> None:
    """loss_curve.png from metrics.csv, then the model kind's own figures (:meth:`ModelKind.figures`).

    Slot attention: slots.png (input, reconstruction, per-slot masks). SLATE: ce_curve.png, and slots.png
    with the input, the dVAE's own reconstruction, the reconstruction through the slots and the slots'
    attention masks (the paper's Figure 4 layout).
    """
    plot_loss_curves({"train loss": metrics_path}, out / "loss_curve.png")
    kind_of(model).figures(model, data, metrics_path, out, seed)


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ImportError("--tensorboard needs the tensorboard package: pip install tensorboard") from err
    return SummaryWriter(str(out / "tensorboard"))
