"""Evaluating a run with more slots on scenes with more objects than it was trained on."""

from __future__ import annotations

import json

from deqslots.cli import main


def test_eval_with_more_slots_on_more_objects(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "cpu-objects", "--data", "same-hue", "--steps", "2", "--batch-size", "4",
                 "--eval-every", "2", "--eval-batches", "1", "--threads", "1", "--no-progress",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--batches", "1", "--num-slots", "10",
                 "--data", "same-hue@min_objects=6,max_objects=8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_slots"] == 10 and result["data"] == "same-hue@min_objects=6,max_objects=8"
    assert -1.0 <= result["fg_ari"] <= 1.0 and result["colour_fg_ari"] < 0.1
    # written beside the run's own evaluation, not over it, and the training figures are left alone
    tagged = run / "eval_test_slots10_data-same-hue@min_objects=6,max_objects=8.json"
    assert json.loads(tagged.read_text())["num_slots"] == 10 and not (run / "eval_test.json").exists()
    figure = (run / "slots.png").stat().st_mtime_ns
    # the run's own slot count by default
    assert main(["eval", str(run), "--batches", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["num_slots"] == 7
    assert json.loads((run / "eval_test.json").read_text())["num_slots"] == 7
    assert json.loads(tagged.read_text())["num_slots"] == 10 and (run / "slots.png").stat().st_mtime_ns > figure


def test_a_shipped_model_with_more_slots_on_more_objects(tmp_path, capsys):
    # docs/slot-attention.md's generalisation figure, checkable on the shipped model: --num-slots, --data (and
    # --iters) apply to
    # --pretrained too, into their own files, without the documented figures (they are the defaults')
    args = ["eval", "--pretrained", "same-hue-IN", "--batches", "1", "--num-slots", "10", "--data",
            "same-hue@min_objects=6,max_objects=8", "--out", str(tmp_path)]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_slots"] == 10 and result["data"] == "same-hue@min_objects=6,max_objects=8"
    assert 0.2 < result["fg_ari"] <= 1.0 and result["colour_fg_ari"] < 0.1 and "documented_fg_ari" not in result
    assert (tmp_path / "eval_test_slots10_data-same-hue@min_objects=6,max_objects=8.json").exists()
    assert not (tmp_path / "eval_test.json").exists()
    assert main(["eval", "--pretrained", "same-hue-IN", "--batches", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["num_slots"] == 7 and result["documented_fg_ari"] == 0.4792
