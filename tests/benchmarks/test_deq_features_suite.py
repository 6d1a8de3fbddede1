"""benchmarks/deq_features_perf.py runs at its tiny size and reports both sections (no timing asserted)."""

import json

import torch

from benchmarks.deq_features_perf import main, mixed_batch

import solvers


def test_tiny_run_writes_both_tables(tmp_path, capsys):
    results = main(["--tiny", "--repeats", "1", "--out", str(tmp_path)])
    assert [r["forward"] for r in results["compaction"]] == ["iterate", "anderson"]
    assert [r["norm"] for r in results["weight_caching"]] == ["spectral_norm", "weight_norm"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["compaction"][0]["fast_steps"] < saved["compaction"][0]["slow_steps"]
    assert "(a) compaction" in (tmp_path / "report.md").read_text()


def test_mixed_batch_converges_at_the_stated_speeds():
    f, x, c, z0 = mixed_batch(dim=256)
    with torch.no_grad():
        _, info = solvers.fixed_point(f, z0, args=(x, c), forward="iterate", tol=1e-4, max_iter=200)
    steps = (info.trace > 1e-4).sum(dim=0) + 1
    assert (steps[:16] <= 4).all() and (steps[16:] >= 45).all() and (steps[16:] <= 75).all()
