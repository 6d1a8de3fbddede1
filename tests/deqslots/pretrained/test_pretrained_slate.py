"""Shipping SLATE: a tiny two-stage SLATE run is exported, loaded back from that file alone (its run and dVAE
folders deleted) with the same weights and metrics, and served by ``load_pretrained`` / ``evaluate_pretrained``,
``deqslots eval --pretrained`` (metrics, colour control, composition, figures) and the demo's SLATE section."""

import json
import math
import shutil
from types import MappingProxyType

import pytest
import torch

from deqslots import SLATE, demo, pretrained
from deqslots.data.batches import BatchStream
from deqslots.training.checkpoint import load_checkpoint, load_model_state
from deqslots.cli import main
from deqslots.evaluation.evaluate import evaluate
from deqslots.pretrained import (FIXED_TEST_BATCH, PretrainedModel, evaluate_pretrained, export_pretrained,
                                 load_exported, load_pretrained)
from deqslots.training.config import TrainConfig
from deqslots.training.loop import build_model, train

from ..slate.slate_runs import tiny_slate_config


def tiny(out, **kw):
    defaults = dict(config="cpu-slate", batch_size=4, steps=2, eval_every=2, checkpoint_every=2)
    return tiny_slate_config(out, **{**defaults, **kw})


def _stream():
    return BatchStream("shapes", "test", 16, 8, 0)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A --stage dvae run, a --stage slots run on it, the slots run's metrics, then its export with both run
    folders deleted: (exported file, the run's checkpoint, the run's metrics)."""
    root = tmp_path_factory.mktemp("ship-slate")
    dvae, run = root / "dvae", root / "run"
    train(tiny(dvae, stage="dvae"))
    train(tiny(run, stage="slots", dvae=str(dvae)))
    state = load_checkpoint(run / "checkpoint.pt")
    # the run as `deqslots eval RUN` rebuilds it
    model = build_model(TrainConfig(**{**state["train_config"], "resume": True}))
    load_model_state(model, state, run / "checkpoint.pt")
    expected = evaluate(model, _stream(), 1, seed=0)
    exported = export_pretrained(run, root / "ship" / "tiny-slate.pt")
    shutil.rmtree(run)
    shutil.rmtree(dvae)  # the dVAE run named in train_config["dvae"] is gone: the file must not need it
    return exported, state, expected


@pytest.fixture
def tiny_entry(shipped, monkeypatch):
    """A SLATE entry ``tiny-slate`` beside the shipped ones, pointing at the exported file."""
    exported = shipped[0]
    entry = PretrainedModel("tiny-slate", exported.name, "IN", "shapes", fg_ari=0.0, mse=0.0, steps=2,
                            seconds=1.0, command="deqslots train --model slate --stage slots --steps 2",
                            model="slate")
    entries = MappingProxyType({**pretrained.PRETRAINED, entry.name: entry})
    monkeypatch.setattr(pretrained, "PRETRAINED", entries)
    monkeypatch.setattr(demo, "PRETRAINED", entries)
    real_path = pretrained.pretrained_path
    monkeypatch.setattr(pretrained, "pretrained_path",
                        lambda name: exported if name == entry.name else real_path(name))
    return entry


def test_exported_slate_loads_alone_with_the_runs_weights_and_metrics(shipped):
    exported, state, expected = shipped
    saved = torch.load(exported, map_location="cpu", weights_only=True)
    assert sorted(saved) == ["format", "model", "model_config", "step", "train_config"]  # no optimizer state
    assert saved["train_config"]["stage"] == "slots" and saved["train_config"]["dvae"]  # names a folder now gone
    model = load_exported(exported)
    assert isinstance(model, SLATE) and not model.training and model.stage == "slots"
    weights = model.state_dict()
    assert sorted(weights) == sorted(state["model"])
    assert any(key.startswith("dvae.") for key in weights)  # the frozen dVAE ships inside the file
    for key, value in state["model"].items():
        assert torch.equal(weights[key], value), key
    got = evaluate(model, _stream(), 1, seed=0)
    assert set(got) == set(expected) and {"mse", "fg_ari", "dvae_mse", "mean_colour_mse", "ce"} <= set(got)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-6, nan_ok=True), key
    assert not math.isnan(got["fg_ari"]) and 0 < got["mse"] < 1


def test_load_and_evaluate_a_slate_entry(tiny_entry, shipped):
    model = load_pretrained(tiny_entry.name)
    assert isinstance(model, SLATE) and not model.training and next(model.parameters()).device.type == "cpu"
    assert model.config.variant == tiny_entry.variant == "IN" and model.stage == "slots"
    result = evaluate_pretrained(tiny_entry.name, batches=1)
    # the fixed test batch of the entry's data at the model's resolution, SLATE's metrics by its kind
    stream = BatchStream("shapes", FIXED_TEST_BATCH["split"], 16, FIXED_TEST_BATCH["batch_size"],
                         FIXED_TEST_BATCH["seed"])
    direct = evaluate(load_exported(shipped[0]), stream, 1, seed=FIXED_TEST_BATCH["seed"])
    assert result.keys() == direct.keys()
    for key in direct:
        assert result[key] == pytest.approx(direct[key], rel=1e-6, nan_ok=True), key


def test_entry_errors_say_what_to_do(tiny_entry, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="model must be one of slot-attention, slate; got 'slaet'"):
        PretrainedModel("x", "x.pt", "IN", "shapes", 0.5, 0.01, 1, 1.0, "deqslots train", model="slaet")
    wrong = PretrainedModel("tiny-slate", "tiny-slate.pt", "IN", "shapes", 0.0, 0.0, 2, 1.0, "deqslots train")
    monkeypatch.setattr(pretrained, "PRETRAINED", MappingProxyType({**pretrained.PRETRAINED, "tiny-slate": wrong}))
    with pytest.raises(ValueError, match="holds a 'slate' model but the pretrained entry 'tiny-slate' says "
                                         "model='slot-attention'; set the entry's model to 'slate'"):
        load_pretrained("tiny-slate")
    # a --stage dvae run has no slots: refused, with the stage to ship instead
    dvae = tmp_path / "dvae"
    train(tiny(dvae, stage="dvae", steps=1, eval_every=1, checkpoint_every=1))
    with pytest.raises(ValueError, match=r"--stage dvae run: a dVAE without slots; ship the --stage slots run"):
        export_pretrained(dvae, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
    # a bare state dict is no shippable model
    torch.save({"model": {}}, tmp_path / "bare.pt")
    with pytest.raises(ValueError, match=r"lacks model_config, train_config\); pass a file written by"):
        load_exported(tmp_path / "bare.pt")


def test_eval_pretrained_cli_with_a_slate_entry(tiny_entry, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert main(["eval", "--pretrained", "tiny-slate", "--batches", "1", "--composition", "2", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pretrained"] == "tiny-slate" and result["model"] == "slate"
    assert result["images"] == FIXED_TEST_BATCH["batch_size"] and result["composition_pairs"] == 2
    for key in ("mse", "mse_other", "dvae_mse", "mean_colour_mse", "ce"):
        assert 0 < result[key] < math.inf, key
    assert 0 <= result["colour_fg_ari"] <= 1 and result["fg_ari_margin"] == pytest.approx(
        result["fg_ari"] - result["colour_fg_ari"])
    assert any(key.startswith("composition_") and key != "composition_pairs" for key in result)
    for figure in ("slots.png", "composition.png"):  # the kind's own figures
        assert (out / figure).stat().st_size > 5_000, figure
    assert not (out / "segmentations.png").exists()
    assert json.loads((out / "eval_test.json").read_text()) == result
    # by default 16 composition pairs, the figure (without --out) written nowhere
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--pretrained", "tiny-slate", "--batches", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["composition_pairs"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert main(["eval", "--pretrained", "tiny-slate", "--batches", "1", "--composition", "0"]) == 0
    assert not any(key.startswith("composition") for key in json.loads(capsys.readouterr().out))
    # slot attention does not generate from its slots: refused before anything is evaluated
    assert main(["eval", "--pretrained", "shapes-IN", "--composition", "2"]) == 2
    err = capsys.readouterr().err
    assert "shapes-IN is a Slot Attention model, which does not (drop --composition)" in err


def test_eval_help_lists_entries_with_their_kind(tiny_entry, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "2000")  # one line per option: the entries' text is not wrapped
    with pytest.raises(SystemExit) as stop:
        main(["eval", "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "tiny-slate (SLATE, shapes, FG-ARI 0.00)" in text
    assert "shapes-IN (Slot Attention, shapes, FG-ARI 0.86)" in text


def test_demo_slate_section(tiny_entry, tmp_path, monkeypatch):
    scores = demo._slate_section(tmp_path)
    assert list(scores) == [name for name, entry in demo.PRETRAINED.items() if entry.model == "slate"]
    assert "tiny-slate" in scores
    result = scores["tiny-slate"]
    assert 0 < result["mse"] < 1 and 0 <= result["colour_fg_ari"] <= 1 and not math.isnan(result["fg_ari"])
    assert (tmp_path / "pretrained_tiny-slate.png").stat().st_size > 5_000
    text = demo._slate_report(scores)
    assert "### Shipped SLATE models" in text and "| tiny-slate | IN | shapes | 0.000 |" in text
    assert "![tiny-slate](pretrained_tiny-slate.png)" in text
    # before any SLATE model ships the section is absent: nothing loaded, nothing in the report
    monkeypatch.setattr(demo, "PRETRAINED", MappingProxyType({k: v for k, v in demo.PRETRAINED.items()
                                                              if v.model != "slate"}))
    assert demo._slate_section(tmp_path / "none") == {} and demo._slate_report({}) == ""


def test_composition_only_for_models_of_shapes(capsys):
    # the composites come from the shapes generator: a same-hue SLATE model skips them by default and refuses them
    # when asked, rather than report swaps measured out of its distribution
    assert main(["eval", "--pretrained", "same-hue-slate-IN", "--batches", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data"] == "same-hue" and not any(key.startswith("composition") for key in result)
    assert main(["eval", "--pretrained", "same-hue-slate-IN", "--batches", "1", "--composition", "4"]) == 2
    err = capsys.readouterr().err
    assert "this model was trained on 'same-hue'" in err and "drop --composition" in err
