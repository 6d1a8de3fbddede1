"""Properties the figures of the smaller suites must have at their test size (the all_tiny run; no timing)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.suites.deq_classifier_suite import MODES, TORCHDEQ, get_deq


def tables(all_tiny, suite: str) -> dict:
    out, _ = all_tiny
    return json.loads((out / suite / "results.json").read_text())["tables"]


def test_slot_attention_memory_grows_with_iterations_only_when_unrolled(all_tiny):
    rows = tables(all_tiny, "slot-attention")["slot_attention_memory"]["rows"]
    saved = {(r["variant"], r["iters"]): r["saved_bytes"] for r in rows}
    assert saved[("vanilla", 3)] > 1.5 * saved[("vanilla", 1)]
    assert saved[("IN", 3)] == pytest.approx(saved[("IN", 1)], rel=0.01)
    data = tables(all_tiny, "slot-attention")["data"]["rows"][0]
    assert data["ratio"] == pytest.approx(data["images_per_s"] / data["training_images_per_s_max"])


def test_deq_classifier_rows_per_backward_mode(all_tiny):
    rows = {r["mode"]: r for r in tables(all_tiny, "deq-classifier")["modes"]["rows"]}
    assert list(rows) == [*MODES, *([TORCHDEQ] if get_deq is not None else [])]
    # the exact gradient's own mode agrees with it; one step of the adjoint series is an approximation of it
    assert rows["implicit (gmres adjoint)"]["grad_cosine_step0"] > 0.999
    assert rows["onestep"]["grad_cosine_step0"] <= rows["implicit (gmres adjoint)"]["grad_cosine_step0"]
    assert rows["unrolled"]["vjps_per_step"] == 0 and rows["onestep"]["vjps_per_step"] == 0
    assert rows["neumann(5)"]["vjps_per_step"] == 4  # terms - 1 products beyond the first term
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and math.isfinite(r["test_loss"]) for r in rows.values())


def test_slate_study_pairs_the_variants(all_tiny):
    t = tables(all_tiny, "slate")
    assert {(r["seed"], r["variant"]) for r in t["study"]["rows"]} == {(0, "vanilla"), (0, "IN")}
    assert all(math.isfinite(r["ce"]) and r["mse_sum"] > 0 for r in t["study"]["rows"])
    assert [r["row"] for r in t["study_summary"]["rows"]] == ["vanilla", "IN", "IN - vanilla (paired)"]
    assert all(r["cached_s"] > 0 and r["uncached_s"] > 0 for r in t["generation"]["rows"])


def test_ddp_and_data_rows(all_tiny):
    t = tables(all_tiny, "ddp")
    assert [(r["device"], r["processes"]) for r in t["speed"]["rows"]] == [("cpu", 1)]
    assert t["speed"]["rows"][0]["speedup_vs_1x1"] == 1.0 and t["speed"]["rows"][0]["timed_steps"] == 2
    assert t["checkpoint"]["rows"][0]["bytes"] > 0 and t["checkpoint"]["rows"][0]["parameters"] > 0
    generators = [r["generator"] for r in tables(all_tiny, "data")["generators"]["rows"]]
    from deqslots.data import DATASETS

    assert generators == list(DATASETS)


def test_slate_variants_trains_every_variant_on_one_frozen_dvae(all_tiny):
    out, _ = all_tiny
    doc = json.loads((out / "slate-variants" / "results.json").read_text())
    runs = doc["tables"]["runs"]["rows"]
    assert [r["variant"] for r in runs] == ["vanilla", "IN", "BN", "BB", "IB"] and all(r["steps"] == 3 for r in runs)
    assert doc["settings"]["config_set"] == "backward_max_iter=50" and doc["settings"]["clip_warmup"] is True
    # one dVAE, trained by the suite, loaded frozen by every run
    assert doc["settings"]["dvae"].endswith("dvae") and (out / "slate-variants" / "dvae" / "checkpoint.pt").exists()
    assert len({r["mean_colour_mse"] for r in runs}) == 1  # the same validation images
    assert all(0 < r["mse"] < 1 and r["mean_colour_mse"] > 0 and 0 <= r["token_accuracy"] <= 1 for r in runs)
    summary = {r["variant"]: r for r in doc["tables"]["summary"]["rows"]}
    assert summary["IN"]["ce_over_IN"] == 1.0 and (out / "slate-variants" / "fig3b.png").exists()


def test_slate_variants_refuses_a_missing_dvae_and_unknown_variants(tmp_path, capsys):
    from benchmarks.__main__ import main

    threads = torch.get_num_threads()
    try:
        for args, message in ((["--dvae", str(tmp_path / "none")], "no checkpoint.pt there; train one with deqslots"),
                              (["--variants", "IN,XX"], "--variants takes vanilla, IN, BN, BB, IB; got XX")):
            with pytest.raises(SystemExit) as exit_:
                main(["slate-variants", "--tiny", "--out", str(tmp_path), *args])
            assert exit_.value.code == 2 and message in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


def test_slate_variants_on_other_data_with_the_authors_fields(tmp_path):
    """--data trains the dVAE and every run on that data; --set reaches the reference-model fields."""
    from benchmarks.__main__ import main

    threads = torch.get_num_threads()
    fields = "backward_max_iter=50,init=reference,decoder_activation=relu,first_block_norm=replace"
    try:
        doc = main(["slate-variants", "--tiny", "--out", str(tmp_path), "--data", "same-hue", "--variants", "IN",
                    "--set", fields])
    finally:
        torch.set_num_threads(threads)
    assert doc["settings"]["recipe"]["data"] == "same-hue" and doc["settings"]["config_set"] == fields
    state = torch.load(tmp_path / "IN_seed0" / "checkpoint.pt", weights_only=False)
    assert state["train_config"]["data"] == "same-hue"
    assert state["model_config"]["init"] == "reference" and state["model_config"]["decoder_activation"] == "relu"
