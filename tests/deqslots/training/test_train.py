"""Training: loss goes down, resume is exact, checkpoints are atomic, bad input is explained."""

import csv
import json

import pytest
import torch

from deqslots.training.checkpoint import load_checkpoint, save_atomic
from deqslots.cli import main
from deqslots.training.schedule import learning_rate
from deqslots.data.batches import BatchStream
from deqslots.evaluation.evaluate import evaluate
from deqslots.training.config import TrainConfig
from deqslots.training.loop import build_model, train


def tiny(out, **kw):
    base = dict(data="shapes", config="cpu-small", resolution=16, num_slots=3, batch_size=8, steps=12,
                eval_every=6, eval_batches=1, checkpoint_every=6, out=str(out), progress=False, lr=1e-3,
                warmup_steps=0)
    base.update(kw)
    return TrainConfig(**base)


def losses(out):
    with open(out / "metrics.csv", newline="") as handle:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(handle)]


@pytest.mark.parametrize("variant", ["vanilla", "IN"])
def test_tiny_training_run_lowers_the_loss(tmp_path, variant):
    config = tiny(tmp_path, variant=variant, steps=60, eval_every=60, eval_batches=2)
    torch.manual_seed(config.seed)
    untrained = evaluate(build_model(config), BatchStream("shapes", "val", 16, 8, 0), batches=2)
    summary = train(config)
    assert len(losses(tmp_path)) == 60
    assert summary["mse"] < 0.8 * untrained["mse"]
    for name in ("checkpoint.pt", "metrics.csv", "loss_curve.png", "slots.png", "summary.json"):
        assert (tmp_path / name).exists()
    assert 0 <= summary["mse"] < 1 and -1 <= summary["fg_ari"] <= 1


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny(full))
    train(tiny(part, steps=6))  # "killed" after the checkpoint at step 6
    # simulate rows logged after the checkpoint by a run that was killed later
    with open(part / "metrics.csv", "a", newline="") as handle:
        handle.write("7,999,0,0,0,,,\n")
    train(tiny(part, resume=True))
    assert losses(part) == losses(full)
    a, b = load_checkpoint(full / "checkpoint.pt"), load_checkpoint(part / "checkpoint.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_existing_run_needs_resume_and_matching_settings(tmp_path):
    train(tiny(tmp_path, steps=6))
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(tiny(tmp_path, steps=6))
    with pytest.raises(ValueError, match="variant: checkpoint 'IN' vs now 'vanilla'"):
        train(tiny(tmp_path, steps=12, variant="vanilla", resume=True))


def test_atomic_save_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "ck.pt"
    save_atomic({"a": torch.ones(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_atomic({"a": Unpicklable()}, path)
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="train first"):
        load_checkpoint(tmp_path / "missing.pt")


def test_schedule_switches():
    assert learning_rate(0, 1.0, warmup_steps=10) == pytest.approx(0.1)
    assert learning_rate(9, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert learning_rate(200, 1.0, warmup_steps=0, decay_steps=100) == pytest.approx(0.25)
    assert learning_rate(200, 1.0, warmup_steps=0, decay_steps=0) == 1.0


def test_config_validation():
    with pytest.raises(ValueError, match="variant must be one of"):
        TrainConfig(variant="XX")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="grad_clip must be > 0"):
        TrainConfig(grad_clip=-1.0)
    with pytest.raises(ValueError, match="unknown data 'mnist'"):
        train(tiny("/tmp/never", data="mnist"))


def test_tau_steps_must_be_an_integer():
    # a float passed (only bools and negatives were refused), unlike the other step counts
    with pytest.raises(ValueError, match=r"tau_steps must be an integer >= 0 \(0 = constant tau_start\) or None; "
                                         r"got 2.5"):
        TrainConfig(model="slate", tau_steps=2.5)
    with pytest.raises(ValueError, match="tau_steps must be an integer >= 0"):
        TrainConfig(model="slate", tau_steps=-1)
    assert TrainConfig(model="slate", tau_steps=0).tau_anneal == 0


def test_cli_train_eval_and_errors(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--model", "slot-attention", "--variant", "IN", "--data", "stacks", "--steps", "3",
            "--batch-size", "4", "--resolution", "16", "--num-slots", "3", "--seed", "1", "--out", str(out),
            "--checkpoint-every", "2", "--eval-every", "3", "--eval-batches", "1", "--no-progress",
            "--grad-clip", "1.0"]
    assert main(args) == 0
    assert main(["eval", str(out), "--batches", "1", "--iters", "5"]) == 0
    result = json.loads((out / "eval_test_iters5.json").read_text())  # another setup: its own file
    assert result["iters"] == 5 and result["step"] == 3 and "fg_ari" in result
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["train", "--data", "folder:" + str(tmp_path / "empty"), "--out", str(tmp_path / "x"),
                 "--no-progress", "--steps", "1"]) == 2
    assert "folder" in capsys.readouterr().err.lower()


def test_folder_data_trains(tmp_path):
    from PIL import Image
    import numpy as np

    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / f"{i}.png")
    summary = train(tiny(tmp_path / "run", data=f"folder:{root}", steps=2, eval_every=2, checkpoint_every=2))
    assert summary["fg_ari"] != summary["fg_ari"]  # no masks: FG-ARI is NaN, MSE still measured
    assert summary["mse"] > 0


def test_sigterm_checkpoints_the_finished_step_and_resume_is_exact(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    args = ["train", "--data", "shapes", "--resolution", "16", "--num-slots", "3", "--batch-size", "8",
            "--steps", "400", "--eval-every", "400", "--eval-batches", "1", "--checkpoint-every", "1000",
            "--lr", "0.001", "--warmup-steps", "0", "--no-progress"]
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "deqslots", *args, "--out", str(run)],
                            stderr=subprocess.PIPE, text=True)
    metrics = run / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 4):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "--resume" in err
    stopped_at = load_checkpoint(run / "checkpoint.pt")["step"]
    assert 3 <= stopped_at < 400 and len(losses(run)) == stopped_at
    # resume to a short total and compare with an uninterrupted run of the same length
    total = stopped_at + 3
    short = [a if a != "400" else str(total) for a in args]
    assert main([*short, "--out", str(run), "--resume"]) == 0
    assert main([*short, "--out", str(tmp_path / "straight")]) == 0
    assert losses(run) == losses(tmp_path / "straight")


def test_nonfinite_loss_skips_or_stops(tmp_path, monkeypatch):
    import deqslots.training.loop as train_module

    real = train_module._train_loss

    def sometimes_nan(model, config, images, step):
        loss, extras = real(model, config, images, step)
        return (loss * float("nan") if step in (2, 4) else loss), extras

    monkeypatch.setattr(train_module, "_train_loss", sometimes_nan)
    summary = train(tiny(tmp_path / "skip", steps=6, on_nonfinite="skip"))
    assert summary["skipped_nonfinite_steps"] == 2
    rows = losses(tmp_path / "skip")
    assert [s for s, loss in rows if loss != loss] == [3, 5]  # logged as NaN, parameters untouched
    state = load_checkpoint(tmp_path / "skip" / "checkpoint.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    with pytest.raises(FloatingPointError, match="loss became non-finite at step 2.*--on-nonfinite skip"):
        train(tiny(tmp_path / "stop", steps=6, checkpoint_every=2))
    assert load_checkpoint(tmp_path / "stop" / "checkpoint.pt")["step"] == 2  # last good checkpoint intact
    with pytest.raises(ValueError, match="on_nonfinite must be 'stop' or 'skip'"):
        tiny(tmp_path / "x", on_nonfinite="ignore")
