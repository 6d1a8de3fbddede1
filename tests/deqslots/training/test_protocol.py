"""The model protocol: a third model, defined here and registered with one line, trains through train(),
resumes exactly, evaluates and runs through the CLI without any edit to train / evaluate / figures / cli;
the two shipped kinds keep their columns and recipes."""

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pytest
import torch
from torch import nn

from deqslots.data.batches import BatchStream
from deqslots.training.checkpoint import load_checkpoint
from deqslots.cli import main
from deqslots.evaluation.evaluate import evaluate
from deqslots.evaluation.figures import plot_loss_curves
from deqslots.evaluation.metrics import fg_ari, mean_fg_ari, mse_per_pixel
from deqslots.training.registry import MODELS, kind_of, model_kind
from deqslots.training.protocol import ModelKind
from deqslots.slate.kind import SLATE_METRIC_COLUMNS
from deqslots.slot_attention.kind import METRIC_COLUMNS
from deqslots.training.loop import build_model, train
from deqslots.training.config import TrainConfig


@dataclass(frozen=True)
class MixtureConfig:
    resolution: int = 16
    num_slots: int = 3


class ColourMixture(nn.Module):
    """Each pixel is a softmax mixture of K learned colours, the mixture weights a 1x1 conv of the pixel."""

    def __init__(self, config: MixtureConfig) -> None:
        super().__init__()
        self.config = config
        self.logits = nn.Conv2d(3, config.num_slots, 1)
        self.colours = nn.Parameter(torch.rand(config.num_slots, 3))

    def forward(self, images):
        masks = self.logits(images).softmax(dim=1)
        return {"recon": torch.einsum("bkhw,kc->bchw", masks, self.colours), "masks": masks}


class MixtureKind(ModelKind):
    name = "colour-mixture"
    title = "colour mixture"
    model_class = ColourMixture
    metric_columns = ["step", "loss", "lr", "grad_norm", "elapsed_s", "mask_entropy", "val_mse", "val_fg_ari"]
    shared_metrics = ("mask_entropy",)
    defaults = MappingProxyType(dict(lr=3e-2, grad_clip=None, grad_clip_type="l2", warmup_cap=0, decay=0))

    def model_config(self, config):
        return MixtureConfig(resolution=config.resolution or 16, num_slots=config.num_slots or 3)

    def loss(self, model, config, images, step):
        out = model(images)
        entropy = -(out["masks"] * out["masks"].clamp_min(1e-9).log()).sum(dim=1).mean()
        return mse_per_pixel(out["recon"], images), {"mask_entropy": float(entropy.detach())}

    @torch.no_grad()
    def evaluate(self, model, stream, batches, seed, iters=None, fid=None):
        mse, aris = 0.0, []
        for b in range(batches):
            batch = stream.batch(b)
            out = model(batch["image"])
            mse += float(mse_per_pixel(out["recon"], batch["image"]))
            if batch["mask"] is not None:
                aris.append(fg_ari(batch["mask"], out["masks"].argmax(dim=1)))
        return {"mse": mse / batches, "fg_ari": mean_fg_ari(aris)}

    def figures(self, model, stream, metrics_path, out, seed):
        plot_loss_curves({"train": metrics_path}, out / "entropy.png", key="mask_entropy", log=False)


@pytest.fixture
def mixture(monkeypatch):
    monkeypatch.setitem(MODELS, MixtureKind.name, MixtureKind())  # the one registry line
    return MODELS[MixtureKind.name]


def tiny(out, **kw):
    base = dict(model="colour-mixture", data="shapes", resolution=16, batch_size=8, steps=8, eval_every=4,
                eval_batches=1, checkpoint_every=4, out=str(out), progress=False)
    return TrainConfig(**{**base, **kw})


def rows(out: Path):
    with open(out / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_third_model_trains_evaluates_and_draws_through_the_protocol(tmp_path, mixture):
    config = tiny(tmp_path, steps=40, eval_every=20, checkpoint_every=40)
    assert (config.lr, config.warmup, config.decay) == (3e-2, 0, 0)  # its own recipe
    summary = train(config)
    table = rows(tmp_path)
    assert list(table[0]) == MixtureKind.metric_columns and len(table) == 40
    loss = [float(r["loss"]) for r in table]
    assert sum(loss[-5:]) < 0.8 * sum(loss[:5]), loss  # measured 0.61
    assert table[19]["val_mse"] and table[19]["val_fg_ari"] and not table[18]["val_mse"]
    assert all(0 <= float(r["mask_entropy"]) <= torch.log(torch.tensor(3.0)) + 1e-6 for r in table)
    assert summary["mse"] == pytest.approx(float(table[-1]["val_mse"]), rel=1e-5)
    for name in ("checkpoint.pt", "loss_curve.png", "entropy.png", "summary.json"):
        assert (tmp_path / name).exists(), name
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["train_config"]["model"] == "colour-mixture"
    assert state["model_config"] == {"resolution": 16, "num_slots": 3}
    model = build_model(TrainConfig(model="colour-mixture", resolution=16))
    assert kind_of(model) is mixture
    model.load_state_dict(state["model"])
    again = evaluate(model, BatchStream("shapes", "val", 16, 8, 0), batches=1)
    assert again["fg_ari"] == pytest.approx(summary["fg_ari"])


def test_a_third_model_resumes_exactly(tmp_path, mixture):
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny(full))
    train(tiny(part, steps=4))
    train(tiny(part, resume=True))
    assert [r["loss"] for r in rows(part)] == [r["loss"] for r in rows(full)]
    a, b = load_checkpoint(full / "checkpoint.pt"), load_checkpoint(part / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_a_third_model_through_the_cli(tmp_path, mixture, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "colour-mixture", "--data", "shapes", "--resolution", "16", "--steps", "3",
                 "--batch-size", "4", "--eval-every", "3", "--eval-batches", "1", "--out", str(run),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--batches", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == 3 and result["iters"] is None and 0 <= result["mse"] < 1
    assert json.loads((run / "eval_test.json").read_text()) == result
    assert main(["eval", str(run), "--fid-weights", "x.pth"]) == 2
    assert "--fid-weights applies to SLATE runs (train --model slate)" in capsys.readouterr().err


def test_settings_and_errors_name_the_kinds(tmp_path, mixture):
    with pytest.raises(ValueError, match="vocab_size is a SLATE setting; use it with model='slate'"):
        tiny(tmp_path, vocab_size=8)
    with pytest.raises(ValueError, match="model must be one of slot-attention, slate, colour-mixture"):
        TrainConfig(model="mixture")
    with pytest.raises(ValueError, match="FID is computed for SLATE runs only"):
        evaluate(build_model(tiny(tmp_path)), BatchStream("shapes", "val", 16, 2, 0), batches=1, fid=object())
    with pytest.raises(ValueError, match="no registered model kind builds Linear"):
        evaluate(nn.Linear(2, 2), BatchStream("shapes", "val", 16, 2, 0), batches=1)


@pytest.mark.parametrize("name, columns, config", [
    ("slot-attention", METRIC_COLUMNS, dict(resolution=16, num_slots=3)),
    ("slate", SLATE_METRIC_COLUMNS, dict(resolution=16, num_slots=3, vocab_size=8)),
])
def test_shipped_kinds_columns_are_what_their_steps_and_evaluations_give(name, columns, config):
    kind = model_kind(name)
    assert kind.metric_columns is columns and kind.name == name
    train_config = TrainConfig(model=name, **config)
    torch.manual_seed(0)
    model = kind.build(train_config)
    assert kind.config_record(model)["num_slots"] == 3
    optimizer = kind.optimizer(model, train_config)
    rates = kind.set_learning_rates(optimizer, train_config, 0)
    images = BatchStream("shapes", "train", 16, 2, 0).batch(0)["image"]
    loss, metrics = kind.loss(model, train_config, images, 0)
    assert loss.dim() == 0 and set(kind.shared_metrics) <= set(metrics)
    result = kind.evaluate(model, BatchStream("shapes", "val", 16, 2, 0), 1, seed=0)
    logged = {"step", "loss", "grad_norm", "elapsed_s", *rates, *metrics, *(f"val_{key}" for key in result)}
    assert set(columns) <= logged, set(columns) - logged


def test_train_config_provides_every_member_of_run_config():
    """The model kinds read a run through RunConfig (a structural type, so the protocol needs nothing of the config
    above it): TrainConfig must have every member, with warmup / decay / tau giving numbers."""
    import typing

    from deqslots.training.protocol import RunConfig

    config = TrainConfig(model="slate", steps=100)
    fields = typing.get_type_hints(RunConfig)
    assert {"variant", "config_set", "lr", "dvae", "stage"} <= set(fields)
    for name in fields:
        assert hasattr(config, name), name
    assert isinstance(config.warmup, int) and isinstance(config.decay, int)
    assert config.tau(0) == config.tau_start and 0 < config.tau(10_000) <= config.tau_start
