"""The gpu suite's CPU dry-run (what a machine without a GPU runs): it says so, and every part runs once.

The test names avoid the word the suite's own pytest selection (-k) looks for.
"""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks.suites.gpu_suite import BUDGETS, PARTS, TABLES


@pytest.fixture(scope="module")
def dry(all_tiny):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the suite ran for real, not its dry-run")
    out, _ = all_tiny
    return out / "gpu", json.loads((out / "gpu" / "results.json").read_text())


def test_dry_run_says_there_is_no_gpu(dry):
    _, doc = dry
    assert doc["settings"]["dry_run"] is True and doc["machine"]["device"] == "cpu"
    assert "no GPU in use" in doc["notes"][0] and "dry-run" in doc["notes"][0]
    assert set(doc["settings"]["part_seconds"]) == set(PARTS)


def test_every_part_leaves_its_table_and_covers_both_precisions_and_compile(dry):
    out, doc = dry
    tables = doc["tables"]
    assert set(tables) == set(TABLES)
    for name in ("slot_attention_speed", "slate_speed"):
        assert {(r["variant"], r["precision"]) for r in tables[name]["rows"]} == {("vanilla", "fp32"), ("IN", "bf16")}
    assert [r["compiled"] for r in tables["compile"]["rows"]] == ["no", "yes (eager)"]
    assert all(r["steps_per_s"] > 0 for name in ("slot_attention_speed", "slate_speed", "compile")
               for r in tables[name]["rows"])
    assert {(r["solver"], r["tol"]) for r in tables["solver_overhead"]["rows"]} == {
        (s, t) for s in ("iterate", "anderson", "broyden") for t in (None, 1e-4)}
    # the pytest subset was selected (collect-only without a GPU), or ran out of its budget on a busy machine
    tests = tables["cuda_tests"]["rows"][0]
    assert tests["mode"].startswith("collect-only") and (tests["collected"] > 0 or tests["timed_out"])
    assert (out / "cuda_tests.txt").exists()


def test_unrolled_memory_grows_with_iterations_and_implicit_does_not(dry):
    _, doc = dry
    rows = doc["tables"]["peak_memory"]["rows"]
    saved = {(r["variant"], r["iters"]): r["bytes"] for r in rows}
    # the encoder and decoder are the same at every T: the growth is slot attention's two extra iterations
    assert saved[("vanilla", 3)] > saved[("vanilla", 1)] * 1.05
    assert saved[("IN", 3)] == pytest.approx(saved[("IN", 1)], rel=0.01)


def test_vanilla_and_in_trained_side_by_side(dry):
    _, doc = dry
    rows = {r["variant"]: r for r in doc["tables"]["vanilla_vs_in"]["rows"]}
    assert set(rows) == {"vanilla", "IN"}
    assert all(r["steps"] == 2 and r["nonfinite_steps"] == 0 and 0 < r["loss_first"] < 1 for r in rows.values())


def test_full_budgets_fit_eight_minutes():
    assert sum(BUDGETS["full"].values()) <= 7 * 60
    assert set(BUDGETS["full"]) == set(PARTS)
