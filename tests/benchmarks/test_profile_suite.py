"""The training-step profiler at tiny sizes: it runs, its results have every phase, and the phases tile the step.

No timing is asserted: timings are measurements, not properties of the code.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.suites.profile_suite import PHASES, StepProfiler, build_arms
from deqslots.evaluation.metrics import mse_per_pixel


@pytest.fixture(scope="module")
def tiny_run(all_tiny):
    out, _ = all_tiny
    return out / "profile", json.loads((out / "profile" / "results.json").read_text())


def test_results_have_both_configs_and_every_phase(tiny_run):
    out, doc = tiny_run
    assert doc["command"].startswith("python -m benchmarks all --tiny")
    assert doc["settings"]["tiny"] is True
    assert doc["settings"]["model_configs"]["before"]["mask_source"] == "decoder"
    assert doc["settings"]["model_configs"]["after"]["mask_source"] == "attention"
    arms = {r["arm"]: r for r in doc["tables"]["arms"]["rows"]}
    assert set(arms) == {"before", "after"}
    rows = doc["tables"]["phases"]["rows"]
    assert [r["phase"] for r in rows] == [*PHASES, "step"]
    for name, arm in arms.items():
        assert arm["steps"] == 2 and arm["batch_size"] == 2
        phases = [r for r in rows if r["phase"] != "step"]
        assert all(r[f"{name}_ms"] >= 0 and 0 <= r[f"{name}_pct"] <= 100 for r in phases)
        # the phases tile the step: shares sum to 100 (up to rounding), times to the step time
        assert sum(r[f"{name}_pct"] for r in phases) == pytest.approx(100.0, abs=0.1)
        assert sum(r[f"{name}_ms"] for r in phases) == pytest.approx(arm["step_ms"], rel=1e-3, abs=0.01)
        assert rows[-1][f"{name}_ms"] == arm["step_ms"]
        assert arm["steps_per_s"] == pytest.approx(1e3 / arm["step_ms"], rel=1e-3)
        ops = [r for r in doc["tables"]["top_ops"]["rows"] if r["arm"] == name]
        assert 1 <= len(ops) <= 10
        selfs = [op["self_cpu_ms"] for op in ops]
        assert selfs == sorted(selfs, reverse=True)
        assert all(not op["op"].startswith(("backward", "encoder", "decoder")) for op in ops)
        regions = {r["region"] for r in doc["tables"]["regions"]["rows"] if r["arm"] == name}
        assert {"backward/decoder", "backward/slot_attention", "backward/encoder"} <= regions
        assert math.isfinite(arm["loss_first"]) and math.isfinite(arm["loss_last"])


def test_markdown_report(tiny_run):
    out, _ = tiny_run
    text = (out / "report.md").read_text()
    assert "| phase | label | before_ms | before_pct | after_ms | after_pct |" in text
    assert "backward: slot attention" in text and "steps_per_s" in text
    assert "#### profile: top_ops" in text and "#### profile: regions" not in text  # results.json only
    assert (out / "profiler_tables.txt").read_text().strip()


def test_profiled_step_computes_the_models_own_loss():
    """The phase-by-phase forward is SlotAutoencoder.forward: same loss for the same slot noise."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is fastest and does not compete with other work
    try:
        _check_losses()
    finally:
        torch.set_num_threads(threads)


def _check_losses() -> None:
    for arm in build_arms(tiny=True):
        images = arm.stream.batch(0)["image"]
        torch.manual_seed(1)
        expected = float(mse_per_pixel(arm.model(images)["recon"], images).detach())
        torch.manual_seed(1)
        phases = StepProfiler(arm).step()
        assert arm.losses == [pytest.approx(expected, rel=1e-6)], arm.name
        assert set(phases) == set(PHASES) and all(v >= 0 for v in phases.values())
