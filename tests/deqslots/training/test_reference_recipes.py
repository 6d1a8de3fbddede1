"""The paper configurations train with their authors' recipe; SLATE's learning-rate plateau rule; checkpoints that
predate the reference-model fields load only into the model they were trained as."""

import csv
import dataclasses

import pytest
import torch

import deqslots.training.loop
from deqslots.training.checkpoint import load_checkpoint, load_model_state
from deqslots.slate import SLATE, SLATEConfig, slate_config_for
from deqslots.training.loop import rebuild_model, train
from deqslots.training.schedule import Plateau
from deqslots.training.config import TrainConfig


def _lrs(out):
    with open(out / "metrics.csv", newline="") as handle:
        return [float(row["lr"]) for row in csv.DictReader(handle)]


def test_slate_paper_configs_take_slate_train_py_recipe():
    for name in ("paper-64", "paper-96"):
        c = TrainConfig(model="slate", config=name, data="shapes")
        assert (c.steps, c.batch_size, c.warmup, c.tau_anneal, c.decay) == (250_000, 50, 30_000, 30_000, 0)
        assert (c.lr, c.dvae_lr, c.grad_clip, c.grad_clip_type, c.lr_plateau_patience) == (1e-4, 3e-4, 1.0, "inf", 4)
    cpu = TrainConfig(model="slate", config="cpu-slate", data="shapes")
    assert cpu.lr_plateau_patience == 0 and cpu.steps == 1000  # CPU configs keep their own recipe
    # a flag still wins over the recipe
    assert TrainConfig(model="slate", config="paper-64", data="shapes", steps=10, lr_plateau_patience=0
                       ).lr_plateau_patience == 0


def test_plateau_rule_halves_after_patience_evaluations_without_a_new_best():
    rule = Plateau(3)
    for loss in (1.0, 1.0, 1.0, 1.0, float("nan"), 2.0, 0.5):
        rule.update(loss)
    assert (rule.factor, rule.best, rule.stale) == (0.5, 0.5, 0)
    off = Plateau(0)
    for loss in (1.0, 2.0, 3.0):
        off.update(loss)
    assert off.factor == 1.0
    with pytest.raises(ValueError, match="lr_plateau_patience must be an integer >= 0"):
        TrainConfig(lr_plateau_patience=-1)


def _tiny(out, **kw):
    # lr so small that the validation loss never improves: every evaluation after the first counts as stale
    base = dict(data="shapes", config="cpu-small", resolution=16, num_slots=3, batch_size=4, steps=8, eval_every=1,
                eval_batches=1, checkpoint_every=4, out=str(out), progress=False, lr=1e-30, warmup_steps=0,
                lr_plateau_patience=2)
    base.update(kw)
    return TrainConfig(**base)


def test_training_halves_the_rates_on_a_plateau_and_a_resumed_run_keeps_the_factor(tmp_path, monkeypatch):
    monkeypatch.setattr(deqslots.training.loop, "evaluate", lambda *args, **kwargs: {"mse": 1.0, "fg_ari": 0.5})
    full, part = tmp_path / "full", tmp_path / "part"
    train(_tiny(full))
    factors = [lr / 1e-30 for lr in _lrs(full)]
    # evaluation after step 1 sets the best; after steps 2-3 two stale ones halve the rate from step 4 on
    assert factors == pytest.approx([1, 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125])
    assert load_checkpoint(full / "checkpoint.pt")["plateau"] == {"best": 1.0, "stale": 1, "factor": 0.125}
    train(_tiny(part, steps=4))
    train(_tiny(part, resume=True))
    assert _lrs(part) == pytest.approx(_lrs(full))


def test_a_checkpoint_that_predates_the_reference_fields_loads_as_the_model_it_was(tmp_path):
    torch.manual_seed(0)
    legacy = dict(SLATEConfig.LEGACY)
    old = SLATE(slate_config_for("cpu-slate", resolution=16, **legacy))  # cpu-slate as trained before issue #22
    record = {key: value for key, value in vars(old.config).items()
              if key not in legacy}  # what a checkpoint written before the fields holds
    state = {"model": old.state_dict(), "model_config": record}
    load_model_state(SLATE(slate_config_for("cpu-slate", resolution=16, **legacy)), state, tmp_path / "old.pt")
    # the same weights into today's cpu-slate (the authors' fields): refused, naming the --set that rebuilds it
    with pytest.raises(ValueError, match=r"decoder_activation: checkpoint 'gelu' vs model 'relu'.*"
                                         r"--set dvae_encoder_blocks=4,decoder_activation=gelu,"):
        load_model_state(SLATE(slate_config_for("cpu-slate", resolution=16)), state, tmp_path / "old.pt")


def test_rebuilding_a_checkpoint_that_predates_the_fields_takes_their_legacy_values(tmp_path):
    """deqslots eval / load_pretrained on a run saved before issue #22 rebuild the model it trained, although
    cpu-slate's defaults have become the authors' since."""
    torch.manual_seed(0)
    config = TrainConfig(model="slate", config="cpu-slate", data="shapes", resolution=16, stage="dvae",
                         config_set="backward_max_iter=5")
    old = SLATE(slate_config_for("cpu-slate", resolution=16, backward_max_iter=5, variant=config.variant,
                                 **SLATEConfig.LEGACY)).set_stage("dvae")
    state = {"model": old.state_dict(), "train_config": dataclasses.asdict(config),
             "model_config": {key: value for key, value in vars(old.config).items()
                              if key not in SLATEConfig.LEGACY}}
    rebuilt_config, model = rebuild_model(state, tmp_path / "old.pt")
    assert {key: getattr(model.config, key) for key in SLATEConfig.LEGACY} == dict(SLATEConfig.LEGACY)
    assert model.config.backward_max_iter == 5  # the run's own --set is kept
    assert rebuilt_config.config_set.startswith("backward_max_iter=5,dvae_encoder_blocks=4,")
    for name, tensor in old.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    # a checkpoint that records the fields rebuilds with what it records: nothing added
    state["model_config"] = vars(SLATE(config.model_config()).config)
    state["model"] = SLATE(config.model_config()).state_dict()
    assert rebuild_model(state, tmp_path / "new.pt")[0].config_set == "backward_max_iter=5"
