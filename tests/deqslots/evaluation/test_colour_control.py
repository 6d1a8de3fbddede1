"""The colour-only control beside every FG-ARI: evaluate's colour_control, the training summary, deqslots eval
(runs and shipped models), the segmentation figure's colour column and the demo report."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from deqslots.data.batches import BatchStream
from deqslots.cli import main
from deqslots.demo import _report
from deqslots.evaluation.colour_control import colour_control
from deqslots.evaluation.figures import plot_segmentation_grid
from deqslots.evaluation.metrics import colour_baseline_fg_ari, mean_fg_ari
from deqslots.pretrained import load_pretrained
from deqslots.training.config import TrainConfig
from deqslots.training.loop import train


def test_colour_control_numbers_and_margin():
    shapes = colour_control(BatchStream("shapes", "val", 32, 8, 0), batches=2, fg_ari=0.9)
    assert shapes["colour_fg_ari"] > 0.97  # flat, distinct colours: colour alone finds the objects
    assert shapes["fg_ari_margin"] == pytest.approx(0.9 - shapes["colour_fg_ari"])
    stream = BatchStream("same-hue", "val", 32, 8, 0)
    hue = colour_control(stream, batches=2)
    assert hue["colour_fg_ari"] < 0.05 and math.isnan(hue["fg_ari_margin"])  # no model number: no margin
    # the mean over exactly the images of the first `batches` batches
    batches = [stream.batch(b) for b in range(2)]
    expected = mean_fg_ari([colour_baseline_fg_ari(b["image"], b["mask"]) for b in batches])
    assert hue["colour_fg_ari"] == pytest.approx(expected)


def _folder(tmp_path, count=12):
    root = tmp_path / "images"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def test_no_masks_no_control(tmp_path):
    control = colour_control(BatchStream(f"folder:{_folder(tmp_path)}", "train", 16, 4, 0), batches=1, fg_ari=0.5)
    assert math.isnan(control["colour_fg_ari"]) and math.isnan(control["fg_ari_margin"])


def test_training_summary_and_eval_report_the_control_on_the_same_images(tmp_path, capsys):
    run = tmp_path / "run"
    config = TrainConfig(data="same-hue", config="cpu-small", num_slots=4, iters=2, batch_size=8, steps=2,
                         eval_every=2, eval_batches=2, checkpoint_every=2, out=str(run), progress=False)
    summary = train(config)
    assert summary["colour_fg_ari"] < 0.05
    assert summary["fg_ari_margin"] == pytest.approx(summary["fg_ari"] - summary["colour_fg_ari"])
    assert json.loads((run / "summary.json").read_text())["colour_fg_ari"] == summary["colour_fg_ari"]
    with open(run / "metrics.csv") as handle:  # computed once per run, not a metrics.csv column
        assert "colour" not in handle.readline()
    capsys.readouterr()
    # deqslots eval on the validation batches the summary used gives the same numbers
    assert main(["eval", str(run), "--split", "val", "--batches", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("fg_ari", "colour_fg_ari", "fg_ari_margin"):
        assert result[key] == pytest.approx(summary[key]), key
    # data without masks: the control is absent (null in the JSON)
    assert main(["eval", str(run), "--data", f"folder:{_folder(tmp_path)}", "--split", "train", "--batches", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fg_ari"] is None and result["colour_fg_ari"] is None and result["fg_ari_margin"] is None


def test_slate_eval_reports_the_control(tmp_path, capsys):
    run = tmp_path / "slate"
    assert main(["train", "--model", "slate", "--data", "shapes", "--steps", "1", "--batch-size", "4",
                 "--resolution", "16", "--num-slots", "3", "--vocab-size", "8", "--eval-batches", "1",
                 "--out", str(run), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["colour_fg_ari"] > 0.9  # 16x16 shapes: a few edge pixels blend two colours
    assert main(["eval", str(run), "--batches", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["colour_fg_ari"] > 0.9
    assert result["fg_ari_margin"] == pytest.approx(result["fg_ari"] - result["colour_fg_ari"])


def test_eval_pretrained_reports_the_control(capsys):
    assert main(["eval", "--pretrained", "shapes-IN", "--batches", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["colour_fg_ari"] > 0.97  # shapes: the shipped model's 0.86 is below colour alone
    assert result["fg_ari_margin"] == pytest.approx(result["fg_ari"] - result["colour_fg_ari"])


@pytest.mark.parametrize("data, low, high", [("shapes", 0.97, 1.0), ("same-hue", -1.0, 0.1)])
def test_segmentation_grid_has_the_colour_column(tmp_path, data, low, high):
    model = load_pretrained("shapes-IN")
    scores = plot_segmentation_grid(model, data, tmp_path / "grid.png", rows=6)
    assert low < scores["colour_fg_ari"] <= high
    width = Image.open(tmp_path / "grid.png").size[0]
    k = model.config.num_slots  # input, objects, segmentation, colour k-means, recon, then the slots
    assert width == pytest.approx(1.3 * (k + 5) * 110, rel=0.02)


def test_demo_report_prints_the_control_beside_each_fg_ari():
    run = dict(mse=1e-3, mse_sum=3.0, fg_ari=0.85, colour_fg_ari=0.99, fg_ari_margin=-0.14, seconds=60,
               steps_per_s=5.0)
    text = _report({"vanilla": run, "IN": dict(run, fg_ari=0.9, fg_ari_margin=-0.09)}, 300,
                   {"shapes-IN": {"fg_ari": 0.8, "colour_fg_ari": 1.0}, "shapes-vanilla": {"fg_ari": 0.7,
                                                                                          "colour_fg_ari": 0.98}})
    assert "| IN | 0.00100 | 3.00 | 0.900 | 0.990 | -0.090 |" in text
    assert "| shapes-IN | 12000 | 0.858 | 0.800 | 1.000 |" in text
    assert "colour alone scores 0.99" in text

