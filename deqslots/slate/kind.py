"""SLATE as a :class:`deqslots.training.protocol.ModelKind` (``--model slate``): the dVAE with its own learning rate,
the annealed Gumbel-softmax temperature, token cross-entropy, evaluation through the slots, and figures."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Optional

import torch

from ..data.batches import BatchStream
from ..evaluation.eval_mode import seeded_eval
from ..evaluation.fid import FIDScore
from ..evaluation.figures import plot_loss_curves
from ..evaluation.metrics import colour_baseline_fg_ari, fg_ari, mean_fg_ari, mse_per_pixel
from ..training.protocol import ModelKind, RunConfig, config_changes
from ..training.schedule import learning_rate
from .config import SLATE_RECIPES, SLATEConfig, slate_config_for
from .evaluate import evaluate_slate, mean_colour_mse
from .compose import compose, composition_pairs, composition_scores
from .figures import plot_composition_grid, plot_slate_grid
from .model import SLATE, STAGES
from .stages import load_dvae

__all__ = ["SLATEKind", "SLATE_METRIC_COLUMNS"]

# ce is summed over tokens per image (SLATE's / the paper's unit), dvae_mse summed per image;
# val_mse / val_mse_sum are reconstructions through the slots (generated tokens).
# val_mse_other: the generations against other images (input-specific generation: well above val_mse);
# val_mean_colour_mse: each image's mean colour, the constant-image bar val_mse has to clear.
SLATE_METRIC_COLUMNS = ["step", "loss", "lr", "dvae_lr", "grad_norm", "elapsed_s", "ce", "ce_per_token", "dvae_mse",
                        "tau", "val_mse", "val_mse_sum", "val_dvae_mse_sum", "val_ce", "val_fg_ari", "val_mse_other",
                        "val_mean_colour_mse", "val_dvae_mse"]


class SLATEKind(ModelKind):
    """:class:`deqslots.SLATE` with SLATE's recipe: Adam 1e-4 (the dVAE 3e-4 without warm-up), warm-up
    min(30000, steps / 10), no decay, gradients clipped at 1.0 in the inf-norm, tau annealed 1.0 -> 0.1.

    Examples:
        >>> import torch
        >>> from deqslots.training.config import TrainConfig
        >>> kind = SLATEKind()
        >>> config = TrainConfig(model="slate", config="cpu-slate", steps=1000)
        >>> _ = torch.manual_seed(0)
        >>> model = kind.build(config)
        >>> model.config.num_tokens, model.stage
        (64, 'joint')
        >>> config.lr, config.dvae_lr, config.warmup, config.grad_clip_type  # the kind's defaults
        (0.0001, 0.0003, 100, 'inf')
        >>> kind.plateau_loss({"dvae_mse_sum": 12.5, "ce": 100.0})
        112.5
    """

    name = "slate"
    title = "SLATE"
    model_class = SLATE
    metric_columns = SLATE_METRIC_COLUMNS
    shared_metrics = ("ce", "ce_per_token", "dvae_mse")
    settings = ("dvae_lr", "vocab_size", "tau_steps", "stage", "dvae")
    defaults = MappingProxyType(dict(lr=1e-4, dvae_lr=3e-4, grad_clip=1.0, grad_clip_type="inf", warmup_cap=30_000,
                                     decay=0, stage="joint"))
    tensorboard_keys = ("loss", "lr", "grad_norm", "val_mse", "val_fg_ari", "ce", "dvae_mse", "tau", "val_ce")
    recipes = SLATE_RECIPES
    fid = True
    composes = True
    scene_figure_name = "slots.png"

    def model_config(self, config: RunConfig) -> SLATEConfig:
        return slate_config_for(config.config, **config_changes(config, ("vocab_size",)))

    def validate(self, config: RunConfig) -> None:
        """The stage is one of :data:`deqslots.slate.model.STAGES`; "slots" names a dVAE run that exists
        (unless resuming: the run's own checkpoint then holds the dVAE), and only "slots" takes one.

        Args:
            config: the run's settings (a :class:`deqslots.training.config.TrainConfig`); reads ``stage``,
                ``dvae``, ``resume``, and ``config`` / ``data`` for the message.

        Raises:
            ValueError: an unknown stage; stage "slots" without ``dvae``, or with a ``dvae`` path that holds no
                checkpoint (when not resuming); ``dvae`` with another stage.
        """
        if config.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}; got {config.stage!r}")
        if config.stage == "slots" and not config.dvae:
            raise ValueError("--stage slots trains slot attention and the decoder on the tokens of a trained, "
                             "frozen dVAE: first run deqslots train --model slate --stage dvae --out DVAE_RUN ..., "
                             "then pass --dvae DVAE_RUN")
        if config.dvae and config.stage != "slots":
            raise ValueError(f"--dvae loads a trained dVAE for --stage slots; drop it or pass --stage slots "
                             f"(got --stage {config.stage})")
        if config.stage == "slots" and not config.resume:
            path = Path(config.dvae)
            if not (path / "checkpoint.pt").is_file() and not path.is_file():
                raise ValueError(f"--dvae {config.dvae}: no checkpoint.pt there; train the dVAE first: deqslots "
                                 f"train --model slate --stage dvae --config {config.config} --data {config.data} "
                                 f"--out {config.dvae}")

    def build(self, config: RunConfig) -> SLATE:
        return SLATE(self.model_config(config)).set_stage(config.stage)

    def initialise(self, model: SLATE, config: RunConfig) -> None:
        """--stage slots: load (and, by the stage, freeze) the dVAE of the run ``config.dvae``.

        Args:
            model: the freshly built SLATE (its stage already set by :meth:`build`).
            config: the run's settings; ``stage`` and ``dvae`` are read. Other stages leave the model as it is.

        Raises:
            ValueError: as :func:`deqslots.slate.stages.load_dvae`: no checkpoint, not a SLATE dVAE run, or a dVAE
                of another shape.
        """
        if config.stage == "slots":
            load_dvae(model, config.dvae)

    def optimizer(self, model: SLATE, config: RunConfig) -> torch.optim.Optimizer:
        groups = model.parameter_groups()
        return torch.optim.Adam([{"params": groups["dvae"], "lr": config.dvae_lr},
                                 {"params": groups["main"], "lr": config.lr}])

    def set_learning_rates(self, optimizer: torch.optim.Optimizer, config: RunConfig, step: int) -> dict[str, float]:
        """The main group's schedule, and the dVAE's own rate with no warm-up (as in SLATE).

        Args:
            optimizer: from :meth:`optimizer`: param group 0 is the dVAE's, group 1 the rest.
            config: the run's settings: ``lr``, ``dvae_lr``, ``warmup`` and ``decay`` (steps per halving, 0 = off).
            step: the 0-based training step.

        Returns:
            The rates set, ``{"lr": ..., "dvae_lr": ...}`` (metrics.csv columns).
        """
        lr = learning_rate(step, config.lr, config.warmup, 0.5, config.decay)
        dvae_lr = learning_rate(step, config.dvae_lr, 0, 0.5, config.decay)
        optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"] = dvae_lr, lr
        return {"lr": lr, "dvae_lr": dvae_lr}

    def loss(self, model, config, images, step):
        tau = config.tau(step)
        losses = model(images, tau=tau)
        metrics = {key: float(losses[key].detach()) for key in self.shared_metrics}
        return losses["loss"], {**metrics, "tau": tau}

    def evaluate(self, model: SLATE, stream: BatchStream, batches: int, seed: int, iters: Optional[int] = None,
                 fid: Optional[FIDScore] = None) -> dict[str, float]:
        """:func:`deqslots.slate.evaluate.evaluate_slate` (FID too when ``fid`` is given).

        Args:
            model: the SLATE (evaluated in eval mode; its mode is restored).
            stream: the validation or test batches.
            batches: how many of its first batches.
            seed: seed of the slot noise.
            iters: slot-attention iterations (default: the model's).
            fid: a :class:`deqslots.evaluation.fid.FIDScore` to fill; None skips FID.

        Returns:
            :func:`deqslots.slate.evaluate.evaluate_slate`'s metrics.
        """
        return evaluate_slate(model, stream, batches, seed=seed, iters=iters, fid=fid)

    @torch.no_grad()
    def figures(self, model: SLATE, stream: BatchStream, metrics_path: Path, out: Path, seed: int) -> None:
        """ce_curve.png, and slots.png: the input, the dVAE's own reconstruction, the reconstruction through
        the slots and the slots' attention masks (the paper's Figure 4 layout).

        At stage "dvae" no ce_curve.png, and slots.png shows only the input and the dVAE's reconstruction.

        Args:
            model: the trained SLATE.
            stream: the batches; the first 4 images of batch 0 are drawn.
            metrics_path: the run's metrics.csv (its ``ce`` column is plotted).
            out: the folder the PNGs go to.
            seed: seed of the slot noise.
        """
        images = stream.batch(0)["image"][:4]
        if model.stage != "dvae":
            plot_loss_curves({"train": metrics_path}, out / "ce_curve.png", key="ce",
                             title="token cross-entropy (sum over tokens)")
        _draw_grid(model, images, out / "slots.png", seed, rows=4)

    @torch.no_grad()
    def scene_figure(self, model: SLATE, data: str, out: Path, split: str = "test", seed: int = 0,
                     rows: int = 6) -> dict[str, float]:
        """The :meth:`figures` grid (input, the dVAE's reconstruction, the reconstruction through the slots and
        the slots' attention masks) on ``rows`` generated scenes; returns on these scenes ``fg_ari`` of the
        attention masks and ``colour_fg_ari`` of the colour-only control, ``mse`` through the slots, ``dvae_mse``
        and ``mean_colour_mse`` (the best constant image). A stage "dvae" model: the dVAE and its MSEs only.

        Args:
            model: the SLATE.
            data: a procedural data set name (e.g. ``"shapes"``), drawn at the model's resolution.
            out: the PNG to write.
            split: the split the scenes come from.
            seed: data seed, and seed of the slot noise and of the colour control.
            rows: scenes drawn and scored (items ``0 .. rows - 1``).

        Returns:
            ``fg_ari``, ``colour_fg_ari``, ``mse``, ``dvae_mse`` and ``mean_colour_mse``; at stage "dvae" only
            ``dvae_mse`` and ``mean_colour_mse``.
        """
        from ..data import generate_batch

        images, true_ids = generate_batch(data, range(rows), split, model.config.resolution, seed)
        recon_dvae, recon, masks = _draw_grid(model, images, out, seed, rows)
        scores = {"dvae_mse": float(mse_per_pixel(recon_dvae, images)),
                  "mean_colour_mse": float(mean_colour_mse(images))}
        if recon is None or masks is None:  # stage dvae: no slots yet
            return scores
        return {"fg_ari": mean_fg_ari([fg_ari(true_ids, masks.argmax(dim=1))]),
                "colour_fg_ari": mean_fg_ari([colour_baseline_fg_ari(images, true_ids, seed=seed)]),
                "mse": float(mse_per_pixel(recon, images)), **scores}

    def composes_now(self, model: SLATE) -> bool:
        return model.stage != "dvae"

    def composition(self, model: SLATE, pairs: int, out: Path, seed: int) -> dict[str, float]:
        """:func:`deqslots.slate.compose.composition_scores` on ``pairs`` ``shapes`` scene pairs at the model's
        resolution (keys prefixed ``composition_``), and composition.png (scene A, the slot swapped out, scene
        B, A generated, the swap, the true composite, a random swap).

        Args:
            model: the trained SLATE (past stage "dvae").
            pairs: how many scene pairs.
            out: the folder composition.png goes to.
            seed: seed of the scenes, the slot noise and the random swap.

        Returns:
            :func:`deqslots.slate.compose.composition_scores`'s metrics, each key prefixed ``composition_``.

        Raises:
            ValueError: the model is at stage "dvae" (no trained slots).
        """
        if not self.composes_now(model):
            raise ValueError("composition needs trained slots; this run is at --stage dvae (train --stage slots "
                             "on it first)")
        set_of = composition_pairs(pairs, model.config.resolution, seed=seed)
        made = compose(model, set_of, seed=seed)
        scores = composition_scores(model, set_of, seed=seed, compositions=made)
        plot_composition_grid(set_of, made, out / "composition.png")
        return {f"composition_{key}": value for key, value in scores.items()}

    def plateau_loss(self, metrics: dict[str, float]) -> float:
        """SLATE's validation loss: the dVAE's squared error per image (tokens decoded) plus the token
        cross-entropy, each where the stage computes it.

        Args:
            metrics: :meth:`evaluate`'s metrics; ``dvae_mse_sum`` and ``ce`` are read (absent or NaN: left out).

        Returns:
            The sum of the finite parts; NaN when neither is.
        """
        parts = [metrics.get("dvae_mse_sum", float("nan")), metrics.get("ce", float("nan"))]
        finite = [part for part in parts if part == part]
        return sum(finite) if finite else float("nan")

    def progress(self, loss, metrics, last_eval):
        if last_eval.get("mse") is None:  # stage dvae, or before the first evaluation
            return {"dvae_mse": f"{metrics['dvae_mse']:.1f}", "ce": f"{metrics['ce']:.1f}"}
        return {"ce": f"{metrics['ce']:.1f}", "mse": f"{last_eval['mse']:.4f}",
                "ari": f"{last_eval.get('fg_ari', float('nan')):.3f}"}


def _draw_grid(model: SLATE, images: torch.Tensor, out: Path, seed: int, rows: int
               ) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Draw the input, the dVAE's reconstruction and (past stage "dvae") the reconstruction through the slots
    with the attention masks into ``out``; returns those three (the last two None at stage "dvae"), on the CPU."""
    device = next(model.parameters()).device
    with seeded_eval(model, seed):
        if model.stage == "dvae":  # no slots yet: the input and the dVAE's reconstruction
            _, tokens = model.tokenize(images.to(device))
            recon_dvae = model.decode_tokens(tokens).cpu()
            plot_slate_grid(images, [("dVAE", recon_dvae, None)], out, rows=rows)
            return recon_dvae, None, None
        result = model.reconstruct(images.to(device))
    recon_dvae, recon, masks = (result[key].cpu() for key in ("recon_dvae", "recon", "masks"))
    plot_slate_grid(images, [("dVAE", recon_dvae, None), (model.config.variant, recon, masks)], out, rows=rows)
    return recon_dvae, recon, masks
