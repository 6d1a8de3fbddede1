"""What the training loop, the evaluators and the CLI know of a model: one small protocol, :class:`ModelKind`.

A model kind (Slot Attention's autoencoder, SLATE, ...) is a stateless object that builds its model from a
:class:`~deqslots.training.config.TrainConfig`, gives the loss of a batch at a step with the per-step entries of
metrics.csv, evaluates, draws its figures and names its metric columns. :func:`deqslots.training.loop.train`,
:func:`deqslots.evaluation.evaluate.evaluate` and ``deqslots train`` / ``eval`` reach a model only through it, so a new
model is one new file with a subclass of :class:`ModelKind` plus one line in :data:`deqslots.training.registry.MODELS`.

Examples:
    >>> from deqslots.training.registry import model_kind
    >>> kind = model_kind("slot-attention")
    >>> kind.metric_columns[:3], kind.defaults["lr"]
    (['step', 'loss', 'lr'], 0.0004)
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional, Protocol

import torch

from ..data.assignments import parse_assignments
from .schedule import learning_rate

if TYPE_CHECKING:  # for hints only
    from ..data.batches import BatchStream

__all__ = ["ModelKind", "RunConfig", "config_changes"]


class RunConfig(Protocol):
    """What a model kind may read of a run's settings: :class:`deqslots.training.config.TrainConfig` has all of it.

    A structural type, so that this protocol, which the model packages import, needs nothing of ``TrainConfig``:
    that resolves itself against the registry of model kinds, so importing it here would close a circle
    (config -> registry -> kinds -> protocol -> config). ``tests/deqslots/training/test_protocol.py`` checks that
    ``TrainConfig`` provides every member.

    Attributes:
        model: the ``--model`` name, a key of :data:`deqslots.training.registry.MODELS`.
        variant: the solver variant: "vanilla" | "IN" | "BN" | "BB" | "IB".
        data: the data set specification (a procedural name, folder:PATH or hdf5:PATH).
        config: the named architecture.
        config_set: ``FIELD=VALUE,...`` overrides of the named architecture (``--set``); empty or None for none.
        resolution: the input resolution override, None for the named architecture's.
        iters: the slot-attention iterations override, None for the named architecture's.
        num_slots: the slot count override, None for the named architecture's.
        vocab_size: SLATE's dVAE vocabulary override, None for the named architecture's.
        steps: optimisation steps in total.
        lr: the peak learning rate (resolved: never None once a ``TrainConfig`` is made).
        dvae_lr: SLATE's dVAE learning rate; None for other kinds.
        stage: SLATE's training stage ("joint", "dvae" or "slots"); None for other kinds.
        dvae: SLATE's ``--stage slots`` only: the run folder whose dVAE is loaded and frozen.
        resume: whether the run continues from its checkpoint.

    Examples:
        >>> from deqslots.training.config import TrainConfig
        >>> from deqslots.training.registry import model_kind
        >>> config: RunConfig = TrainConfig(data="shapes", resolution=16, num_slots=3)
        >>> model_kind(config.model).model_config(config).resolution  # what a kind reads of it
        16
        >>> config.warmup, config.decay, config.tau(0)
        (200, 0, 1.0)
    """

    model: str
    variant: str
    data: str
    config: str
    config_set: Optional[str]
    resolution: Optional[int]
    iters: Optional[int]
    num_slots: Optional[int]
    vocab_size: Optional[int]
    steps: int
    lr: float
    dvae_lr: Optional[float]
    stage: Optional[str]
    dvae: Optional[str]
    resume: bool

    @property
    def warmup(self) -> int:
        """Steps of the linear learning-rate warm-up (0 = none)."""
        ...

    @property
    def decay(self) -> int:
        """Steps per halving of the learning rate (0 = no decay)."""
        ...

    def tau(self, step: int) -> float:
        """SLATE's Gumbel-softmax temperature at 0-based ``step``.

        Args:
            step: 0-based optimisation step.

        Returns:
            The temperature (> 0).
        """
        ...



def config_changes(config: "RunConfig", names: tuple[str, ...] = ()) -> dict[str, Any]:
    """The architecture overrides a :class:`~deqslots.training.config.TrainConfig` asks for: its variant, and the
    ``resolution`` / ``iters`` / ``num_slots`` (plus ``names``) that are set (not None), and ``config_set``.

    Args:
        config: the run's settings.
        names: further ``config`` fields to pass on when set, e.g. ``("vocab_size",)`` for SLATE.

    Returns:
        Architecture field -> value, for ``config_for(config.config, **changes)``: ``variant`` always, the set
            overrides, then the ``config_set`` assignments (parsed to ints, floats, ... where they read as such).

    Raises:
        ValueError: when ``config_set`` is not ``FIELD=VALUE,...``, or assigns ``variant`` or a field whose own
            flag (``resolution``, ``iters``, ``num_slots``, ``names``) is set to another value.

    Examples:
        >>> from deqslots.training.config import TrainConfig
        >>> config_changes(TrainConfig(variant="BN", num_slots=4))
        {'variant': 'BN', 'num_slots': 4}
        >>> config_changes(TrainConfig(variant="BN", num_slots=4, config_set="iters=3,decoder_position_frequencies=3"))
        {'variant': 'BN', 'num_slots': 4, 'iters': 3, 'decoder_position_frequencies': 3}
    """
    changes: dict[str, Any] = {"variant": config.variant}
    for name in ("resolution", "iters", "num_slots", *names):
        if getattr(config, name) is not None:
            changes[name] = getattr(config, name)
    if config.config_set:  # --set FIELD=VALUE,...: any other field of the architecture
        assigned = parse_assignments(config.config_set, "decoder_position_frequencies=3")
        # A field with a flag of its own may come from --set only where the flag was not given: otherwise the run
        # records the flag's value and trains with the other (--variant IN --set variant=vanilla trained vanilla,
        # labelled IN). The variant always has a value (its flag's default), so it is never --set.
        clash = [f"{name}={assigned[name]!r} (the flag says {changes[name]!r})" for name in sorted(assigned)
                 if name in changes and (name == "variant" or assigned[name] != changes[name])]
        if clash:
            flags = ", ".join("--" + n.replace("_", "-") for n in sorted(assigned) if n in changes)
            raise ValueError(f"--set {'; '.join(clash)}: give a field that has a flag of its own ({flags}) "
                             "with that flag only")
        changes.update(assigned)
    return changes


class ModelKind(abc.ABC):
    """One trainable model, as the training loop, the evaluators and the CLI see it.

    Subclasses set the class attributes and implement :meth:`model_config`, :meth:`loss`, :meth:`evaluate`
    and :meth:`figures`; the rest (:meth:`validate`, :meth:`build`, :meth:`initialise`, ...) has defaults
    (Adam over every parameter, one warm-up/decay schedule, the
    model config dataclass as the checkpoint's record). Kinds hold no state: one instance serves every run.

    Attributes:
        name: the ``--model`` value (``TrainConfig.model``), saved in every checkpoint.
        title: the name in messages, e.g. ``"SLATE"``.
        model_class: the ``nn.Module`` class it builds; :func:`deqslots.training.registry.kind_of` finds a model's
            kind by it.
        metric_columns: the header of metrics.csv: ``step, loss, lr, grad_norm, elapsed_s``, the keys of
            :meth:`set_learning_rates` and :meth:`loss`'s metrics, and ``val_KEY`` for keys of :meth:`evaluate`
            logged at each periodic evaluation.
        shared_metrics: keys of :meth:`loss`'s metrics that are averages over the batch; under several processes
            they are averaged over the processes (the rest, e.g. a temperature, are the same on every rank).
        settings: ``TrainConfig`` fields only this kind uses; setting one for another kind is an error.
        defaults: the recipe for ``TrainConfig`` fields left None: ``lr``, ``grad_clip``, ``grad_clip_type``,
            any of ``settings``, and ``warmup_cap`` (warm-up = min(cap, steps // 10)) and ``decay`` (steps per
            halving of the learning rate, 0 = off).
        tensorboard_keys: metrics.csv columns also logged to TensorBoard.
        recipes: per named architecture (``--config``), ``TrainConfig`` values that override ``defaults``
            and the global defaults for fields left None (``steps``, ``batch_size``, ``warmup_steps``,
            ``decay_steps``, ``eval_every``, ...): the recipe a named config was measured with, so that
            ``deqslots train --config NAME --data ...`` needs no further flags.
        fid: :meth:`evaluate` takes a :class:`deqslots.evaluation.fid.FIDScore` (``deqslots eval --fid-weights``).
        composes: the model generates from slots and :meth:`composition` measures slot swaps
            (``deqslots eval --composition N``).
        scene_figure_name: the file ``deqslots eval --pretrained NAME --out DIR`` writes :meth:`scene_figure` to.

    Examples:
        What the training loop does with a kind, on a tiny Slot Attention model:

        >>> import torch
        >>> from deqslots.training.config import TrainConfig
        >>> from deqslots.training.registry import model_kind
        >>> config = TrainConfig(data="shapes", resolution=16, num_slots=3, iters=2)  # cpu-small: warm-up 200
        >>> kind = model_kind(config.model)
        >>> _ = torch.manual_seed(config.seed)
        >>> model = kind.build(config)
        >>> optimizer = kind.optimizer(model, config)
        >>> kind.set_learning_rates(optimizer, config, step=99)
        {'lr': 0.0003}
        >>> loss, metrics = kind.loss(model, config, torch.rand(2, 3, 16, 16), step=0)
        >>> loss.shape, metrics
        (torch.Size([]), {})
        >>> kind.config_record(model)["num_slots"], kind.progress(0.25, metrics, {"fg_ari": 0.5})
        (3, {'loss': '0.2500', 'ari': '0.500'})
    """

    name: ClassVar[str]
    title: ClassVar[str]
    model_class: ClassVar[type]
    metric_columns: ClassVar[list[str]]
    shared_metrics: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[Mapping[str, Any]]
    tensorboard_keys: ClassVar[tuple[str, ...]] = ("loss", "lr", "grad_norm", "val_mse", "val_fg_ari")
    recipes: ClassVar[Mapping[str, Mapping[str, Any]]] = MappingProxyType({})
    fid: ClassVar[bool] = False
    composes: ClassVar[bool] = False
    scene_figure_name: ClassVar[str] = "scenes.png"

    @abc.abstractmethod
    def model_config(self, config: "RunConfig") -> Any:
        """The architecture (a frozen dataclass with a ``resolution``) that ``config`` describes.

        Args:
            config: the run's settings (named ``config``, its overrides and ``config_set``).

        Returns:
            The model's config dataclass, e.g. :class:`~deqslots.slot_attention.config.AutoencoderConfig`.

        Raises:
            TypeError: for a ``config_set`` field the dataclass does not have (``TrainConfig`` turns it into a
                ``ValueError``).
            ValueError: from :func:`config_changes`, for a malformed or clashing ``config_set``.
        """

    def validate(self, config: "RunConfig") -> None:  # noqa: B027 (an optional hook; by default a no-op)
        """Refuse settings this kind cannot train with a ``ValueError`` saying what to pass instead (called
        when the ``TrainConfig`` is made, before anything is written); by default nothing more to check.

        Args:
            config: the run's settings, with the recipe's values filled in.

        Raises:
            ValueError: in subclasses, for settings the kind cannot train with.
        """

    def build(self, config: "RunConfig") -> torch.nn.Module:
        """A freshly initialised model (the caller seeds torch first).

        Args:
            config: the run's settings.

        Returns:
            ``model_class(self.model_config(config))``, on the CPU.
        """
        return self.model_class(self.model_config(config))

    def initialise(self, model: torch.nn.Module, config: "RunConfig") -> None:  # noqa: B027 (optional hook, no-op)
        """Prepare the model of a run that starts (not a resumed one: its checkpoint holds every weight), e.g.
        load weights trained by another run; called on rank 0 only (DistributedDataParallel then copies rank 0's
        weights to the other ranks). By default nothing.

        Args:
            model: the freshly built model, on the run's device; changed in place.
            config: the run's settings.
        """

    def config_record(self, model: torch.nn.Module) -> dict[str, Any]:
        """What a checkpoint records of the architecture (``model_config``), compared field by field on load.

        Args:
            model: the (unwrapped) model, with a dataclass ``config``.

        Returns:
            Field name -> value (``dataclasses.asdict(model.config)`` by default).
        """
        return dataclasses.asdict(model.config)

    def optimizer(self, model: torch.nn.Module, config: "RunConfig") -> torch.optim.Optimizer:
        """Adam over every parameter at ``config.lr`` (the schedule sets the rate each step).

        Args:
            model: the (unwrapped) model.
            config: the run's settings.

        Returns:
            A fresh optimiser; its state goes into checkpoints.
        """
        return torch.optim.Adam(model.parameters(), lr=config.lr)

    def set_learning_rates(self, optimizer: torch.optim.Optimizer, config: "RunConfig", step: int
                           ) -> dict[str, float]:
        """Set this step's rates on ``optimizer``; returns them by metrics.csv column (``lr``, ...).

        By default :func:`~deqslots.training.schedule.learning_rate` with ``config.lr``, ``config.warmup`` and
        halving every ``config.decay`` steps, for every parameter group.

        Args:
            optimizer: the optimiser :meth:`optimizer` made (rates set in place).
            config: the run's settings.
            step: 0-based optimisation step.

        Returns:
            metrics.csv column -> rate, before the loop applies the plateau rule's factor.
        """
        lr = learning_rate(step, config.lr, config.warmup, 0.5, config.decay)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return {"lr": lr}

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, config: "RunConfig", images: torch.Tensor, step: int
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise on ``images`` at 0-based ``step`` and this step's metrics.csv entries.

        ``model`` may be wrapped (DistributedDataParallel): call it, do not reach into its attributes.

        Args:
            model: the model in training mode, possibly wrapped.
            config: the run's settings.
            images: this process's share of the batch, ``(B, 3, H, W)`` in [0, 1], on the model's device.
            step: 0-based optimisation step.

        Returns:
            The scalar loss (with its graph) and metric column -> value for this step (empty when none);
                keys in ``shared_metrics`` are batch averages.
        """

    @abc.abstractmethod
    def evaluate(self, model: torch.nn.Module, stream: "BatchStream", batches: int, seed: int,
                 iters: Optional[int] = None, fid: Optional[Any] = None) -> dict[str, float]:
        """Mean metrics over the first ``batches`` batches of ``stream``, with slot noise seeded by ``seed``
        and the training RNG left untouched; ``fg_ari`` (NaN without true masks) when the model segments.

        Args:
            model: the (unwrapped) model; evaluated in eval mode without gradients.
            stream: the validation (or test) batches.
            batches: how many of ``stream``'s first batches to average over.
            seed: seed of the slot noise.
            iters: slot-attention iterations at evaluation; None = the model's own.
            fid: a :class:`deqslots.evaluation.fid.FIDScore` for kinds with ``fid``; None = no FID.

        Returns:
            Metric name -> mean value (e.g. ``mse``, ``mse_sum``, ``fg_ari``).
        """

    @abc.abstractmethod
    def figures(self, model: torch.nn.Module, stream: "BatchStream", metrics_path: Path, out: Path, seed: int
                ) -> None:
        """Write the run's figures besides loss_curve.png (e.g. slots.png) into ``out``.

        Args:
            model: the (unwrapped) trained model.
            stream: the validation batches to draw.
            metrics_path: the run's metrics.csv (for curves such as SLATE's ce_curve.png).
            out: the run folder.
            seed: seed of the slot noise.
        """

    def scene_figure(self, model: torch.nn.Module, data: str, out: Path, split: str = "test", seed: int = 0,
                     rows: int = 6) -> dict[str, float]:
        """Draw ``model`` on the first ``rows`` generated scenes of the procedural data set ``data`` (its
        ``split``, data seed ``seed``) into the PNG ``out``; returns the scores on those scenes (``fg_ari``,
        ``colour_fg_ari``, ...). What ``deqslots eval --pretrained NAME --out DIR`` and ``deqslots demo`` show
        of a shipped model; kinds that ship implement it.

        Args:
            model: the (unwrapped) trained model.
            data: a procedural data set name, e.g. "shapes".
            out: the PNG file to write.
            split: "train" | "val" | "test".
            seed: the data seed of the scenes (and the slot noise).
            rows: how many scenes to draw.

        Returns:
            Score name -> value on the drawn scenes.

        Raises:
            ValueError: by default: the kind draws no scene figure.
        """
        raise ValueError(f"{self.title} models draw no scene figure; implement scene_figure on its ModelKind "
                         "(or evaluate without --out)")

    def composes_now(self, model: torch.nn.Module) -> bool:
        """Whether :meth:`composition` applies to this trained model (e.g. not before its slots are trained).

        Args:
            model: the (unwrapped) trained model.

        Returns:
            ``composes`` by default.
        """
        return self.composes

    def composition(self, model: torch.nn.Module, pairs: int, out: Path, seed: int) -> dict[str, float]:
        """Composition measured on ``pairs`` generated scene pairs (metrics keyed ``composition_*``), and its
        figure written into ``out``; only kinds with ``composes`` implement it.

        Args:
            model: the (unwrapped) trained model.
            pairs: the number of generated scene pairs.
            out: the folder the figure is written into.
            seed: the data seed of the scenes (and the slot noise).

        Returns:
            ``composition_*`` metric -> value.

        Raises:
            ValueError: by default: the kind does not generate from its slots.
        """
        raise ValueError(f"composition is measured for models that generate from their slots; a {self.title} "
                         "run does not (drop --composition)")

    def plateau_loss(self, metrics: dict[str, float]) -> float:
        """The validation loss that ``--lr-plateau-patience`` watches, from :meth:`evaluate`'s metrics; by default
        the reconstruction MSE.

        Args:
            metrics: what :meth:`evaluate` returned.

        Returns:
            The loss; lower is better, NaN counts as no improvement.
        """
        return metrics["mse"]

    def progress(self, loss: float, metrics: dict[str, float], last_eval: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows after a step.

        Args:
            loss: this step's loss (averaged over ranks).
            metrics: this step's metrics from :meth:`loss`.
            last_eval: the latest periodic evaluation's metrics; empty before the first.

        Returns:
            Label -> formatted value, for tqdm's postfix (by default ``loss`` and ``ari``, the last FG-ARI).
        """
        return {"loss": f"{loss:.4f}", "ari": f"{last_eval.get('fg_ari', float('nan')):.3f}"}
