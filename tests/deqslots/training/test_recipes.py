"""Named configs carry the training recipe they were measured with; explicit settings win."""

from __future__ import annotations

import pytest

from deqslots.slot_attention.config import CONFIGS, RECIPES
from deqslots.cli import main
from deqslots.training.config import TrainConfig


@pytest.mark.parametrize("name, steps", [("cpu-small", 10_000), ("cpu-objects", 15_000)])
def test_cpu_configs_need_no_flags(name, steps):
    config = TrainConfig(config=name)
    assert (config.steps, config.batch_size, config.lr, config.warmup, config.decay) == (steps, 16, 6e-4, 200, 0)
    assert (config.eval_every, config.eval_batches, config.grad_clip) == (500, 8, None)


def test_paper_configs_take_the_authors_recipe_and_flags_win():
    paper = TrainConfig(config="paper-64")
    assert (paper.steps, paper.batch_size, paper.lr, paper.warmup, paper.decay) == (500_000, 64, 4e-4, 10_000, 100_000)
    assert (paper.grad_clip, paper.eval_every, paper.eval_batches) == (None, 5_000, 8)
    shorter = TrainConfig(config="paper-64", steps=50_000, batch_size=32)
    assert (shorter.steps, shorter.batch_size, shorter.warmup, shorter.decay) == (50_000, 32, 10_000, 100_000)
    mine = TrainConfig(config="cpu-objects", steps=20, batch_size=4, lr=1e-3, warmup_steps=0, decay_steps=10)
    assert (mine.steps, mine.batch_size, mine.lr, mine.warmup, mine.decay) == (20, 4, 1e-3, 0, 10)
    assert set(RECIPES) <= set(CONFIGS)


def test_cli_uses_the_recipe(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "cpu-objects", "--data", "same-hue", "--steps", "1", "--eval-batches", "1",
                 "--no-progress", "--threads", "1", "--out", str(run)]) == 0
    import torch

    saved = torch.load(run / "checkpoint.pt", weights_only=True)["train_config"]
    assert (saved["batch_size"], saved["lr"], saved["warmup_steps"], saved["decay_steps"]) == (16, 6e-4, 200, 0)


def test_set_changes_other_architecture_fields(tmp_path, capsys):
    from deqslots.training.loop import build_model

    model = build_model(TrainConfig(config="cpu-objects", config_set="decoder_position_frequencies=3,iters=4"))
    config = model.config
    assert (config.decoder_position_frequencies, config.iters, config.mask_source) == (3, 4, "decoder")
    with pytest.raises(ValueError, match=r"--set decoder_position_frequency=3: unknown config field.*did|valid"):
        TrainConfig(config="cpu-objects", config_set="decoder_position_frequency=3")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        TrainConfig(config="cpu-objects", config_set="iters")
    run = tmp_path / "run"
    args = ["train", "--config", "cpu-objects", "--data", "same-hue", "--steps", "1", "--eval-batches", "1",
            "--no-progress", "--threads", "1", "--set", "attention_guidance_steps=7", "--out", str(run)]
    assert main(args) == 0
    import torch

    saved = torch.load(run / "checkpoint.pt", weights_only=True)
    assert saved["train_config"]["config_set"] == "attention_guidance_steps=7"
    assert saved["model_config"]["attention_guidance_steps"] == 7
    capsys.readouterr()
    # resuming with another --set is refused
    assert main([*args[:-2], "--set", "attention_guidance_steps=8", "--out", str(run), "--resume", "--steps", "2"]) == 2
    assert "config_set" in capsys.readouterr().err
