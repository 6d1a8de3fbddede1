"""The training-step profiler at tiny sizes: it runs, its JSON has every phase, and the phases tile the step.

No timing is asserted: timings are measurements, not properties of the code.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmarks.train_profile import PHASES, StepProfiler, build_arms, main
from deqslots.metrics import mse_per_pixel


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_profile")
    threads = torch.get_num_threads()
    try:
        doc = main(["--tiny", "--steps", "2", "--profile-steps", "1", "--warmup", "1", "--threads", "1",
                    "--out", str(out)])
    finally:
        torch.set_num_threads(threads)  # main sets it for the whole process
    return out, doc


def test_json_has_both_configs_and_every_phase(tiny_run):
    out, doc = tiny_run
    on_disk = json.loads((out / "profile.json").read_text())
    assert on_disk == json.loads(json.dumps(doc))  # what main returns is what it wrote
    assert on_disk["phases"] == list(PHASES) and on_disk["tiny"] is True
    assert on_disk["command"].startswith("python -m benchmarks.train_profile --tiny")
    assert on_disk["machine"]["torch"] == torch.__version__
    assert set(on_disk["configs"]) == {"before", "after"}
    for name, cfg in on_disk["configs"].items():
        assert cfg["steps"] == 2 and cfg["batch_size"] == 2
        assert set(cfg["phases"]) == set(PHASES)
        for phase in cfg["phases"].values():
            assert phase["ms"] >= 0 and 0 <= phase["pct"] <= 100
        # the phases tile the step: shares sum to 100 (up to rounding), times to the step time
        assert sum(p["pct"] for p in cfg["phases"].values()) == pytest.approx(100.0, abs=0.1)
        assert sum(p["ms"] for p in cfg["phases"].values()) == pytest.approx(cfg["step_ms"], rel=1e-3, abs=0.01)
        assert cfg["steps_per_s"] == pytest.approx(1e3 / cfg["step_ms"], rel=1e-3)
        assert 1 <= len(cfg["top_ops"]) <= 10
        selfs = [op["self_cpu_ms"] for op in cfg["top_ops"]]
        assert selfs == sorted(selfs, reverse=True)
        assert all(not op["op"].startswith(("backward", "encoder", "decoder")) for op in cfg["top_ops"])
        assert {"backward/decoder", "backward/slot_attention", "backward/encoder"} <= set(cfg["profiler_regions_ms"])
        assert math.isfinite(cfg["loss_first"]) and math.isfinite(cfg["loss_last"])
    assert on_disk["configs"]["before"]["model_config"]["mask_source"] == "decoder"
    assert on_disk["configs"]["after"]["model_config"]["mask_source"] == "attention"


def test_markdown_report(tiny_run):
    out, _ = tiny_run
    text = (out / "profile.md").read_text()
    assert "| phase | before ms | before % | after ms | after % |" in text
    assert "backward: slot attention" in text and "steps/s" in text
    assert text.count("### Top 10 ops by self CPU time") == 2
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
