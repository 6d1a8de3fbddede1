"""The deq-features suite runs at its tiny size and reports both sections (no timing asserted)."""

import json

import torch

import solvers
from benchmarks.suites.deq_features_suite import mixed_batch


def test_tiny_run_writes_both_tables(all_tiny):
    out, _ = all_tiny
    tables = json.loads((out / "deq-features" / "results.json").read_text())["tables"]
    assert [r["forward"] for r in tables["compaction"]["rows"]] == ["iterate", "anderson"]
    assert [r["norm"] for r in tables["weight_caching"]["rows"]] == ["spectral_norm", "weight_norm"]
    assert tables["compaction"]["rows"][0]["fast_steps"] < tables["compaction"]["rows"][0]["slow_steps"]
    assert "(a) compaction" in (out / "deq-features" / "report.md").read_text()


def test_mixed_batch_converges_at_the_stated_speeds():
    f, x, c, z0 = mixed_batch(dim=256)
    with torch.no_grad():
        _, info = solvers.fixed_point(f, z0, args=(x, c), forward="iterate", tol=1e-4, max_iter=200)
    steps = (info.trace > 1e-4).sum(dim=0) + 1
    assert (steps[:16] <= 4).all() and (steps[16:] >= 45).all() and (steps[16:] <= 75).all()
