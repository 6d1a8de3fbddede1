"""The shipped pretrained checkpoints: they load, are small, and score what they document (SLATE's too, once
shipped: tests/deqslots/pretrained/test_pretrained_slate.py checks the SLATE path on a tiny run)."""

import json
import math

import pytest

from deqslots.cli import main
from deqslots.training.registry import kind_of
from deqslots.pretrained import FIXED_TEST_BATCH, PRETRAINED, evaluate_pretrained, load_pretrained, pretrained_path


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_checkpoint_scores_what_it_documents(name):
    entry = PRETRAINED[name]
    # the issues' limits: 5 MB per slot-attention model (issue #8), 10 MB per SLATE model (issue #12)
    assert pretrained_path(name).stat().st_size <= {"slot-attention": 5, "slate": 10}[entry.model] * 2**20
    model = load_pretrained(name)
    assert model.config.variant == entry.variant and not model.training and kind_of(model).name == entry.model
    result = evaluate_pretrained(name)
    # the fixed test batch is generated deterministically, so only float summation order may differ
    assert result["fg_ari"] == pytest.approx(entry.fg_ari, abs=2e-3)
    assert result["mse"] == pytest.approx(entry.mse, rel=2e-2)
    if entry.model == "slot-attention":
        # real training, not a placeholder: shapes is discovered (by colour, like k-means on colour); same-hue
        # stands 0.46 above its colour control (0.005); clevr-mirror stays below its (0.38; the IN model 0.17 when
        # evaluated, as trained, with its differentiated step; 0.01-0.08 after 1,500 steps in the variant study)
        assert entry.fg_ari >= {"shapes": 0.8, "same-hue": 0.4, "clevr-mirror": 0.15}[entry.data]
    else:  # SLATE: a trained dVAE (its own tokens decode better than each image's best constant colour); what
        # generation from the slots reaches is documented, not required (the shipped ones: docs/pretrained.md,
        # the lab notebook)
        # and generation is input-specific: its images score far better against their inputs than against others
        # (shapes 0.33x; same-hue 0.49-0.51x, whose scenes differ from each other mostly in hue)
        assert result["dvae_mse"] < result["mean_colour_mse"] and result["mse"] < 0.6 * result["mse_other"], result
        assert "--model slate" in entry.command
    assert f"--variant {entry.variant}" in entry.command and f"--steps {entry.steps}" in entry.command


def test_eval_pretrained_cli_prints_and_writes_segmentations(tmp_path, capsys):
    assert main(["eval", "--pretrained", "shapes-IN", "--batches", "1", "--out", str(tmp_path)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pretrained"] == "shapes-IN" and result["images"] == FIXED_TEST_BATCH["batch_size"]
    assert 0.0 <= result["fg_ari"] <= 1.0 and not math.isnan(result["documented_fg_ari"])
    assert (tmp_path / "segmentations.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "eval_test.json").read_text())["fg_ari"] == result["fg_ari"]


def test_eval_pretrained_bad_input(capsys):
    assert main(["eval", "--pretrained", "shapes-XX"]) == 2
    err = capsys.readouterr().err
    assert "unknown pretrained model 'shapes-XX'; choose one of clevr-mirror-IN, clevr-mirror-vanilla, " in err
    assert f"choose one of {', '.join(sorted(PRETRAINED))}" in err
    assert main(["eval", "some/run", "--pretrained", "shapes-IN"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert "name the run folder to evaluate" in capsys.readouterr().err
