"""What defines a training run: :class:`TrainConfig`, the dataclass ``deqslots train`` builds from its flags.

Fields left None are resolved when the config is made, against the model kind it names
(:data:`deqslots.training.registry.MODELS`): the named config's recipe, then the kind's defaults, then the global
ones, so that a checkpoint records (and ``--resume`` compares) concrete values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from solvers import VARIANTS

from .distributed import DEVICES
from .registry import MODELS, model_kind
from .schedule import cosine_anneal

__all__ = ["TrainConfig", "PRECISIONS"]

PRECISIONS = ("fp32", "bf16")


# What a field left None becomes when neither the named config's recipe nor the model's defaults set it.
_GLOBAL_DEFAULTS = dict(steps=1000, batch_size=32, eval_every=200, eval_batches=4, lr_plateau_patience=0)


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in the checkpoint).

    Fields left None take the named config's recipe first (``deqslots.slot_attention.config.RECIPES``: ``cpu-small`` and
    ``cpu-objects`` carry the CPU recipe they were measured with: batch 16, Adam 6e-4, warm-up 200, no decay,
    their step budgets; the ``paper-*`` configs their authors' recipes, and so do SLATE's in
    ``deqslots.slate.SLATE_RECIPES``), then the model's (its kind's ``defaults``): Slot Attention's for
    "slot-attention", SLATE's for "slate"; then steps 1000, batch 32, evaluation every 200 steps on 4 batches.

    Attributes:
        model: a name in ``deqslots.training.registry.MODELS``: "slot-attention" | "slate".
        variant: "vanilla" | "IN" | "BN" | "BB" | "IB".
        data: a procedural data set (shapes, clevr-mirror, stacks, same-hue), folder:PATH or hdf5:PATH.
        config: named architecture (``deqslots.CONFIGS`` or, for SLATE, ``deqslots.SLATE_CONFIGS``).
        config_set: other fields of the named architecture to change, ``FIELD=VALUE,FIELD=VALUE`` (``--set``),
            e.g. ``decoder_position_frequencies=3,attention_guidance_steps=5000``.
        resolution: override the named architecture's input resolution (pixels per side) when set.
        iters: override the named architecture's slot-attention iterations when set.
        num_slots: override the named architecture's number of slots when set.
        vocab_size: SLATE only: override the dVAE vocabulary.
        stage: SLATE only: "joint" (default: everything at once, as SLATE), "dvae" (the dVAE alone) or
            "slots" (slot attention and the decoder on the frozen tokens of the dVAE in ``dvae``).
        dvae: SLATE only, with ``stage="slots"``: the run folder whose dVAE is loaded and frozen.
        steps: optimisation steps in total (a resumed run continues up to it).
        batch_size: images per step, summed over all processes (a multiple of the world size under torchrun).
        seed: the seed fixes initialisation, data and slot noise.
        lr: peak Adam learning rate; None = 4e-4 (Slot Attention) or 1e-4 (SLATE, all but the dVAE).
        dvae_lr: SLATE only: the dVAE's learning rate (no warm-up); None = 3e-4.
        warmup_steps: linear warm-up of ``lr``; None = min(10000, steps // 10) (SLATE: min(30000, steps // 10));
            0 = off.
        decay_steps: lr halves every ``decay_steps``; None = 100000 (Slot Attention) or off (SLATE); 0 = off.
        grad_clip: clip the global gradient norm to this; 0 = off; None = off (Slot Attention) or 1.0 (SLATE).
        grad_clip_type: "l2" or "inf" (the largest absolute gradient entry, as SLATE's code clips);
            None = "l2" (Slot Attention) or "inf" (SLATE).
        tau_start: SLATE's Gumbel-softmax temperature at step 0 (> 0).
        tau_final: SLATE's temperature from ``tau_steps`` on (> 0).
        tau_steps: SLATE's Gumbel-softmax temperature is cosine-annealed from start to final over ``tau_steps``;
            None = min(30000, steps // 2); 0 = constant ``tau_start``. (Defaults that follow ``steps`` change if a
            resumed run is given more steps: pass them explicitly to extend a run.)
        lr_plateau_patience: halve every learning rate after this many periodic evaluations in a row without a
            lower validation loss (the kind's :meth:`~deqslots.training.protocol.ModelKind.plateau_loss`; SLATE's
            recipe: 4 epochs); 0 = off; None = the named config's recipe, else off.
        eval_every: steps between periodic validations (MSE, FG-ARI; also at the last step).
        eval_batches: the number of fixed validation batches each validation averages over.
        checkpoint_every: steps between atomic checkpoints (and one at the end).
        out: run folder.
        resume: continue from ``out/checkpoint.pt`` (a new run there when it holds none yet).
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

    Raises:
        ValueError: when made with an unknown ``model``, ``variant``, ``device``, ``precision`` or
            ``on_nonfinite``; a count that is not a positive integer (``steps``, ``batch_size``, ``eval_every``,
            ``eval_batches``, ``checkpoint_every``) or not an integer >= 0 (``warmup_steps``, ``decay_steps``,
            ``lr_plateau_patience``, ``threads``, ``tau_steps``); a non-positive ``lr``, ``dvae_lr``, ``tau_start``
            or ``tau_final``; a negative ``grad_clip``; a ``grad_clip_type`` other than "l2" / "inf"; a setting of
            another model kind (e.g. ``dvae_lr`` for Slot Attention); a ``config_set`` naming an unknown field;
            or settings the kind refuses (its :meth:`~deqslots.training.protocol.ModelKind.validate`).

    Examples:
        >>> config = TrainConfig(data="shapes", resolution=16, num_slots=3)  # cpu-small's recipe fills the rest
        >>> config.steps, config.batch_size, config.lr, config.warmup, config.decay
        (10000, 16, 0.0006, 200, 0)
        >>> config.model_config().num_slots
        3
        >>> slate = TrainConfig(model="slate", steps=1000)
        >>> slate.lr, slate.dvae_lr, slate.grad_clip_type, slate.tau(0), slate.tau(250), slate.tau(500)
        (0.0001, 0.0003, 'inf', 1.0, 0.55, 0.1)
        >>> TrainConfig(steps=0)
        Traceback (most recent call last):
        ...
        ValueError: steps must be a positive integer; got 0
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
        if self.tau_steps is not None and (isinstance(self.tau_steps, bool) or not isinstance(self.tau_steps, int)
                                           or self.tau_steps < 0):
            raise ValueError(f"tau_steps must be an integer >= 0 (0 = constant tau_start) or None; "
                             f"got {self.tau_steps!r}")
        if self.config_set:  # a misspelt field is an error now, not after the data is opened
            try:
                kind.model_config(self)
            except TypeError as err:
                raise ValueError(f"--set {self.config_set}: {err}") from None
        kind.validate(self)

    @property
    def warmup(self) -> int:
        """Steps of the linear learning-rate warm-up: ``warmup_steps``, or when None min(cap, steps // 10) with the
        kind's cap (10000 Slot Attention, 30000 SLATE); 0 = none."""
        cap = model_kind(self.model).defaults["warmup_cap"]
        return min(cap, self.steps // 10) if self.warmup_steps is None else self.warmup_steps

    @property
    def decay(self) -> int:
        """Steps per halving of the learning rate: ``decay_steps``, or when None the kind's default (100000 Slot
        Attention, 0 SLATE); 0 = no decay."""
        return model_kind(self.model).defaults["decay"] if self.decay_steps is None else self.decay_steps

    @property
    def tau_anneal(self) -> int:
        """Steps of the temperature annealing (SLATE)."""
        return min(30_000, self.steps // 2) if self.tau_steps is None else self.tau_steps

    def tau(self, step: int) -> float:
        """SLATE's Gumbel-softmax temperature at 0-based ``step``.

        Args:
            step: 0-based optimisation step.

        Returns:
            ``tau_start`` cosine-annealed to ``tau_final`` over :attr:`tau_anneal` steps, ``tau_final`` after.
        """
        return cosine_anneal(step, self.tau_start, self.tau_final, self.tau_anneal)

    def model_config(self):
        """The architecture this run trains (its kind's config dataclass).

        For "slot-attention" an :class:`~deqslots.slot_attention.config.AutoencoderConfig`: the named ``config``
        with ``variant``, the ``resolution`` / ``iters`` / ``num_slots`` that are set, and ``config_set`` applied.
        """
        return model_kind(self.model).model_config(self)
