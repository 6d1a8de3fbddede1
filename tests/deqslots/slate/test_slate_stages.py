"""SLATE in stages: --stage dvae trains the dVAE alone, --stage slots loads that dVAE, freezes it and trains the
rest on its tokens (and resumes / evaluates without the dVAE run), bad stage settings are refused with the fix,
and the cpu-slate config and the new architecture options are checked."""

import json
import math
import shutil

import pytest
import torch

from deqslots import SLATE, slate_config_for
from deqslots.training.checkpoint import load_checkpoint
from deqslots.cli import main
from deqslots.slate.evaluate import mean_colour_mse
from deqslots.slate.stages import load_dvae
from deqslots.training.config import TrainConfig
from deqslots.training.loop import build_model, train

from .slate_runs import metrics_rows, tiny_slate_config


def tiny(out, **kw):
    defaults = dict(config="cpu-slate", batch_size=4, steps=3, eval_every=3, checkpoint_every=3)
    return tiny_slate_config(out, **{**defaults, **kw})


rows = metrics_rows


def weights(out):
    return load_checkpoint(out / "checkpoint.pt")["model"]


@pytest.fixture(scope="module")
def dvae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stages") / "dvae"
    summary = train(tiny(out, stage="dvae"))
    return out, summary


def test_dvae_stage_trains_the_dvae_alone(dvae_run):
    out, summary = dvae_run
    torch.manual_seed(0)  # the run's seed: the same initial weights
    initial = build_model(tiny(out, stage="dvae")).state_dict()
    trained = weights(out)
    moved = {key for key in trained if not torch.equal(trained[key], initial[key])}
    assert moved and all(key.startswith("dvae.") for key in moved), sorted(moved)[:5]
    assert any(key.startswith("dvae.encoder") for key in moved) and any(key.startswith("dvae.decoder") for key in moved)
    table = rows(out)
    assert all(math.isnan(float(r["ce"])) for r in table)  # the decoder is not run
    assert [float(r["loss"]) for r in table] == pytest.approx([float(r["dvae_mse"]) for r in table])
    # its evaluation is the dVAE's alone: no slots to generate from yet, so no FG-ARI or colour control
    assert set(summary) >= {"dvae_mse", "dvae_mse_sum", "mean_colour_mse"} and "fg_ari" not in summary
    assert 0 < summary["dvae_mse"] < 1 and (out / "slots.png").exists()


def test_slots_stage_loads_and_freezes_the_dvae(dvae_run, tmp_path):
    dvae_out, _ = dvae_run
    out = tmp_path / "slots"
    summary = train(tiny(out, stage="slots", dvae=str(dvae_out)))
    before, after = weights(dvae_out), weights(out)
    torch.manual_seed(0)
    initial = build_model(tiny(out, stage="slots", dvae=str(dvae_out))).state_dict()
    for key in after:
        if key.startswith("dvae."):
            assert torch.equal(after[key], before[key]), key  # loaded, then never updated
    moved = [key for key in after if not key.startswith("dvae.") and not torch.equal(after[key], initial[key])]
    assert any(k.startswith("decoder.") for k in moved) and any(k.startswith("slot_attention.") for k in moved)
    table = rows(out)
    assert [float(r["loss"]) for r in table] == pytest.approx([float(r["ce"]) for r in table])
    assert all(math.isnan(float(r["dvae_mse"])) for r in table)  # the frozen dVAE's error is not recomputed
    # the frozen dVAE reconstructs exactly as it did at the end of its own run (same tokens, same decoder)
    assert summary["dvae_mse_sum"] == pytest.approx(train_summary(dvae_out)["dvae_mse_sum"], rel=1e-5)
    for key in ("mse", "mse_other", "mean_colour_mse", "token_accuracy", "fg_ari", "colour_fg_ari"):
        assert summary[key] == summary[key], key  # reported, finite
    # the slots stage tokenizes without Gumbel noise even in training mode: the dVAE's argmax
    model = build_model(tiny(out, stage="slots", dvae=str(dvae_out), resume=True)).train()
    images = torch.rand(2, 3, 16, 16)
    assert torch.equal(model.tokenize(images)[1], model.eval().tokenize(images)[1])


def train_summary(out):
    return json.loads((out / "summary.json").read_text())


def test_slots_stage_resumes_and_evaluates_without_the_dvae_run(dvae_run, tmp_path, capsys):
    source, _ = dvae_run
    dvae_copy = tmp_path / "dvae-copy"
    shutil.copytree(source, dvae_copy)
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny(full, stage="slots", dvae=str(dvae_copy), steps=4, checkpoint_every=2, eval_every=4))
    train(tiny(part, stage="slots", dvae=str(dvae_copy), steps=2, checkpoint_every=2, eval_every=4))
    shutil.rmtree(dvae_copy)  # the run's own checkpoint holds the dVAE from now on
    train(tiny(part, stage="slots", dvae=str(dvae_copy), steps=4, checkpoint_every=2, eval_every=4, resume=True))
    assert [r["loss"] for r in rows(part)] == [r["loss"] for r in rows(full)]
    capsys.readouterr()
    assert main(["eval", str(part), "--batches", "1"]) == 0
    assert json.loads((part / "eval_test.json").read_text())["step"] == 4


def test_bad_stage_settings_say_what_to_do(dvae_run, tmp_path):
    dvae_out, _ = dvae_run
    with pytest.raises(ValueError, match=r"--stage slots trains .* --stage dvae --out DVAE_RUN .* --dvae DVAE_RUN"):
        tiny(tmp_path / "a", stage="slots")
    with pytest.raises(ValueError, match=r"--dvae .*nothing: no checkpoint.pt there; train the dVAE first: deqslots "
                                         r"train --model slate --stage dvae"):
        tiny(tmp_path / "a", stage="slots", dvae=str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="--dvae loads a trained dVAE for --stage slots; drop it or pass"):
        tiny(tmp_path / "a", dvae=str(dvae_out))
    with pytest.raises(ValueError, match="stage must be one of joint, dvae, slots; got 'dvea'"):
        tiny(tmp_path / "a", stage="dvea")
    with pytest.raises(ValueError, match="stage is a SLATE setting; use it with model='slate'"):
        TrainConfig(stage="dvae")
    assert not (tmp_path / "a").exists()  # refused before anything was written
    # a dVAE of another shape: the fields are named
    with pytest.raises(ValueError, match=r"another shape \(vocab_size: dVAE run 16 vs now 32\)"):
        train(tiny(tmp_path / "b", stage="slots", dvae=str(dvae_out), vocab_size=32))
    # a slots run is no dVAE run, and neither is a slot-attention run
    slots = tmp_path / "slots"
    train(tiny(slots, stage="slots", dvae=str(dvae_out), steps=1, eval_every=1, checkpoint_every=1))
    with pytest.raises(ValueError, match="trained slots on a frozen dVAE; give the run that trained the dVAE"):
        load_dvae(build_model(tiny(tmp_path / "c")), slots)
    sa = tmp_path / "sa"
    train(TrainConfig(data="shapes", resolution=16, num_slots=3, batch_size=2, steps=1, eval_every=1, eval_batches=1,
                      out=str(sa), progress=False))
    with pytest.raises(ValueError, match="this is a 'slot-attention' run; give the folder of a SLATE run"):
        load_dvae(build_model(tiny(tmp_path / "c")), sa)
    # resuming with another stage is another run
    with pytest.raises(ValueError, match="stage: checkpoint 'slots' vs now 'joint'"):
        train(tiny(slots, steps=2, resume=True))


def test_cli_stages_and_their_errors(tmp_path, capsys):
    common = ["--model", "slate", "--config", "cpu-slate", "--data", "shapes", "--resolution", "16",
              "--vocab-size", "8", "--num-slots", "3", "--batch-size", "2", "--steps", "1", "--eval-every", "1",
              "--eval-batches", "1", "--no-progress"]
    assert main(["train", *common, "--stage", "dvae", "--out", str(tmp_path / "d")]) == 0
    dvae, slots = str(tmp_path / "d"), str(tmp_path / "s")
    assert main(["train", *common, "--stage", "slots", "--dvae", dvae, "--out", slots]) == 0
    assert load_checkpoint(tmp_path / "s" / "checkpoint.pt")["train_config"]["stage"] == "slots"
    capsys.readouterr()
    assert main(["train", *common, "--stage", "slots", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "deqslots train: error: --stage slots trains" in err and "--dvae DVAE_RUN" in err
    assert main(["train", "--stage", "dvae", "--out", str(tmp_path / "y")]) == 2
    assert "stage is a SLATE setting; use it with model='slate' (--model slate)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cpu_slate_config_and_the_new_options():
    c = slate_config_for("cpu-slate")
    assert (c.resolution, c.num_tokens, c.vocab_size, c.d_model, c.mask_upsample) == (32, 64, 64, 64, "bilinear")
    for field, value, message in (("slot_input", "cnn", "slot_input must be one of embedding, dvae"),
                                  ("token_dropout", 1.0, r"token_dropout must be in \[0, 1\)"),
                                  ("token_dropout", True, "token_dropout must be in"),
                                  ("mask_upsample", "cubic", "mask_upsample must be one of nearest, bilinear")):
        with pytest.raises(ValueError, match=message):
            c.replace(**{field: value})
    with pytest.raises(ValueError, match="SLATE stage must be one of joint, dvae, slots"):
        SLATE(c).set_stage("all")
    # slot_input=dvae groups the dVAE's features: extra projection, and encode_slots needs the features
    torch.manual_seed(0)
    model = SLATE(c.replace(resolution=16, slot_input="dvae", num_slots=3)).eval()
    images = torch.rand(2, 3, 16, 16)
    features, logits = model.dvae.encode_with_features(images)
    assert torch.allclose(logits, model.dvae.encode(images))
    tokens = logits.argmax(1).flatten(1)
    with pytest.raises(ValueError, match="slot_input='dvae'.*pass features="):
        model.encode_slots(tokens)
    _, slots, attn = model.encode_slots(tokens, features=features)
    assert slots.shape == (2, 3, 64) and attn.shape == (2, 3, 16)
    out = model.reconstruct(images)
    assert torch.allclose(out["masks"].sum(1), torch.ones(2, 16, 16), atol=1e-5)  # bilinear keeps a partition
    # the slots see the features: other features, other slots (the dVAE's features reach slot attention)
    _, other, _ = model.encode_slots(tokens, features=features + 1.0)
    assert not torch.allclose(slots, other)


def test_token_dropout_replaces_decoder_inputs_in_training_only():
    torch.manual_seed(0)
    config = slate_config_for("cpu-slate", resolution=16, num_slots=3, dropout=0.0)
    plain, dropping = SLATE(config), SLATE(config.replace(token_dropout=0.5))
    dropping.load_state_dict(plain.state_dict())
    images = torch.rand(4, 3, 16, 16)
    plain.set_stage("slots"), dropping.set_stage("slots")  # no Gumbel noise: only the token dropout differs
    torch.manual_seed(1)
    a = plain(images)["ce"]
    torch.manual_seed(1)
    b = dropping(images)["ce"]
    assert not torch.allclose(a, b)
    plain.eval(), dropping.eval()
    torch.manual_seed(1)
    a = plain(images)["ce"]
    torch.manual_seed(1)
    assert torch.allclose(a, dropping(images)["ce"])  # evaluation sees every token


def test_mean_colour_mse_is_the_best_constant_per_image():
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    best = images.mean(dim=(2, 3), keepdim=True)
    expected = ((images - best) ** 2).mean()
    assert float(mean_colour_mse(images)) == pytest.approx(float(expected))
    for shift in (0.05, -0.1):  # any other constant colour is worse
        assert float(((images - best - shift) ** 2).mean()) > float(expected)


def test_token_oracle_shows_what_masks_on_a_token_grid_can_reach():
    from deqslots.data.batches import BatchStream
    from deqslots.slate.evaluate import token_oracle_fg_ari

    def oracle(resolution, upsample):
        ids = BatchStream("shapes", "val", resolution, 32, 0).batch(0)["mask"]
        return float(torch.nanmean(token_oracle_fg_ari(ids, resolution // 4, upsample)))

    # 4x4-pixel tokens on shapes: at 32x32 even perfect binding stays far below an FG-ARI of 0.85
    small_nearest, small_bilinear = oracle(32, "nearest"), oracle(32, "bilinear")
    large_bilinear = oracle(64, "bilinear")
    assert 0.35 < small_nearest < small_bilinear < 0.7 < large_bilinear, (small_nearest, small_bilinear, large_bilinear)
    with pytest.raises(ValueError, match="do not split into a 5x5 token grid"):
        token_oracle_fg_ari(torch.zeros(1, 8, 8, dtype=torch.long), 5)

