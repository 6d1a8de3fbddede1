"""SLATE training: the cross-entropy goes down (vanilla and IN), resume is exact, the recipe's switches,
metrics.csv columns, figures, and the CLI train / eval (with and without FID)."""

import json

import pytest
import torch
from torch import nn

from deqslots.training.checkpoint import load_checkpoint
from deqslots.cli import main
from deqslots.slate.kind import SLATE_METRIC_COLUMNS
from deqslots.training.loop import build_model, train
from deqslots.training.config import TrainConfig

from .slate_runs import metrics_rows, tiny_slate_config


def tiny(out, **kw):
    defaults = dict(config="cpu-small", batch_size=8, steps=8, eval_every=4, checkpoint_every=4)
    return tiny_slate_config(out, **{**defaults, **kw})


rows = metrics_rows


@pytest.mark.parametrize("variant", ["vanilla", "IN"])
def test_tiny_training_run_lowers_the_cross_entropy(tmp_path, variant):
    # a small vocabulary and large learning rates so 40 steps suffice (CE starts near 16 * ln 8 = 33)
    summary = train(tiny(tmp_path, variant=variant, steps=40, eval_every=40, checkpoint_every=40, vocab_size=8,
                         lr=3e-3, dvae_lr=3e-3))
    ce = [float(r["ce"]) for r in rows(tmp_path)]
    assert len(ce) == 40
    first, last = sum(ce[:5]) / 5, sum(ce[-5:]) / 5
    assert last < 0.85 * first, (first, last)
    for name in ("checkpoint.pt", "metrics.csv", "loss_curve.png", "ce_curve.png", "slots.png", "summary.json"):
        assert (tmp_path / name).exists()
    for key in ("mse", "mse_sum", "dvae_mse_sum", "ce", "ce_per_token", "fg_ari"):
        assert summary[key] == summary[key], key  # finite, not NaN
    assert summary["ce_per_token"] == pytest.approx(summary["ce"] / 16)


def test_metrics_columns_and_recipe_values(tmp_path):
    train(tiny(tmp_path, steps=4, warmup_steps=4, tau_steps=2, tau_start=1.0, tau_final=0.5, lr=2e-4, dvae_lr=4e-4))
    table = rows(tmp_path)
    assert list(table[0]) == SLATE_METRIC_COLUMNS
    assert [float(r["lr"]) for r in table] == pytest.approx([5e-5, 1e-4, 1.5e-4, 2e-4])  # warm-up: main only
    assert [float(r["dvae_lr"]) for r in table] == pytest.approx([4e-4] * 4)
    assert [float(r["tau"]) for r in table] == pytest.approx([1.0, 0.75, 0.5, 0.5])
    assert table[3]["val_mse"] and table[3]["val_ce"] and not table[0]["val_mse"]


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    # tau_steps fixed: by default the annealing length follows --steps, which differs between the calls
    train(tiny(full, variant="vanilla", tau_steps=6))
    train(tiny(part, variant="vanilla", tau_steps=6, steps=4))  # "killed" after the checkpoint at step 4
    train(tiny(part, variant="vanilla", tau_steps=6, resume=True))
    assert [r["loss"] for r in rows(part)] == [r["loss"] for r in rows(full)]
    a, b = load_checkpoint(full / "checkpoint.pt"), load_checkpoint(part / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_slate_defaults_and_validation():
    config = TrainConfig(model="slate", steps=1000)
    assert (config.lr, config.dvae_lr, config.grad_clip, config.grad_clip_type) == (1e-4, 3e-4, 1.0, "inf")
    assert (config.warmup, config.decay) == (100, 0)
    assert TrainConfig(model="slate", grad_clip=0.0).grad_clip == 0.0  # off
    sa = TrainConfig(config="paper-64")  # Slot Attention's recipe
    assert (sa.lr, sa.grad_clip, sa.grad_clip_type, sa.dvae_lr) == (4e-4, None, "l2", None)
    with pytest.raises(ValueError, match="dvae_lr is a SLATE setting"):
        TrainConfig(dvae_lr=1e-3)
    with pytest.raises(ValueError, match="grad_clip_type must be"):
        TrainConfig(model="slate", grad_clip_type="l1")
    with pytest.raises(ValueError, match="tau_start and tau_final must be > 0"):
        TrainConfig(model="slate", tau_final=0.0)
    with pytest.raises(ValueError, match="unknown SLATE config 'paper-32'"):
        build_model(TrainConfig(model="slate", config="paper-32"))
    assert build_model(TrainConfig(model="slate", vocab_size=64)).config.vocab_size == 64


def test_resume_rejects_other_slate_settings(tmp_path):
    train(tiny(tmp_path, steps=4))
    with pytest.raises(ValueError, match="dvae_lr: checkpoint 0.001 vs now 0.0005"):
        train(tiny(tmp_path, steps=8, dvae_lr=5e-4, resume=True))


def test_cli_eval_skips_composition_for_runs_of_other_data(tmp_path, capsys):
    # composites come from the shapes generator: a clevr-mirror run is not measured on them, and asking is refused
    out = tmp_path / "run"
    assert main(["train", "--model", "slate", "--data", "clevr-mirror", "--steps", "1", "--batch-size", "2",
                 "--resolution", "16", "--num-slots", "3", "--vocab-size", "8", "--out", str(out), "--eval-every", "1",
                 "--eval-batches", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--batches", "1"]) == 0
    assert not any(key.startswith("composition") for key in json.loads((out / "eval_test.json").read_text()))
    assert not (out / "composition.png").exists()
    assert main(["eval", str(out), "--batches", "1", "--composition", "2"]) == 2
    assert "this model was trained on 'clevr-mirror'" in capsys.readouterr().err


def test_cli_train_and_eval_with_and_without_fid(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "slate", "--variant", "IN", "--data", "shapes", "--steps", "2", "--batch-size",
            "4", "--resolution", "16", "--num-slots", "3", "--vocab-size", "16", "--out", str(out), "--eval-every", "2",
            "--eval-batches", "1", "--no-progress", "--grad-clip", "off", "--tau-steps", "0"]
    assert main(args) == 0
    saved = load_checkpoint(out / "checkpoint.pt")["train_config"]
    assert saved["grad_clip"] == 0.0 and saved["model"] == "slate" and saved["lr"] == 1e-4
    capsys.readouterr()
    assert main(["eval", str(out), "--batches", "1", "--iters", "5"]) == 0
    assert "FID skipped" in capsys.readouterr().err
    result = json.loads((out / "eval_test_iters5.json").read_text())  # another setup: its own file
    assert result["fid"] is None and result["iters"] == 5 and result["step"] == 2
    assert {"mse", "mse_sum", "dvae_mse_sum", "ce", "ce_per_token", "fg_ari"} <= set(result)
    # composition is measured by default on 16 shapes pairs, with its figure
    assert result["composition_pairs"] == 16 and (out / "composition.png").exists()
    assert all(0 <= result[f"composition_mse_{k}"] <= 1 for k in ("swap", "random", "unswapped"))
    pytest.importorskip("ignite")
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    torch.jit.save(torch.jit.script(net), str(tmp_path / "features.pt"))
    assert main(["eval", str(out), "--batches", "2", "--fid-weights", str(tmp_path / "features.pt")]) == 0
    result = json.loads((out / "eval_test.json").read_text())
    assert isinstance(result["fid"], float) and result["fid"] >= -1e-6
    assert main(["eval", str(out), "--fid-weights", str(tmp_path / "nothing.pth")]) == 2
    assert "no FID weights file" in capsys.readouterr().err
