"""The variants study where colour fails: the `objects` plan and the data / config / --set options."""

from __future__ import annotations

import pytest
import torch

from benchmarks.suites import load_suite
from benchmarks.suites.common import RunContext
from deqslots.slot_attention.config import config_for
from deqslots.training.loop import build_model


def plan(tmp_path, **overrides):
    suite = load_suite("variants")
    ctx = RunContext(size="cpu", seeds=None, device=torch.device("cpu"), out=tmp_path, command="", overrides=overrides)
    return suite, suite.plan_for(ctx)


def test_objects_plan_trains_cpu_objects_on_same_hue_with_an_uncapped_adjoint(tmp_path):
    suite, objects = plan(tmp_path, plan="objects")
    assert (objects.data, objects.config, objects.config_set) == ("same-hue", "cpu-objects", "backward_max_iter=50")
    assert set(objects.variants) == {"vanilla", "IN", "BN", "BB", "IB"} and objects.seeds == 3
    assert objects.main_iters == 3 and objects.ablation_tricks == ("no clip, no warmup",)
    spec = suite.Spec("slot-attention", "BB", objects.main_iters, 0, True, True)
    config = suite._config(spec, objects, 0.1, tmp_path / "r", objects.steps, 500)
    model = build_model(config)
    assert model.slot_attention.backward_max_iter == 50 and model.config.mask_source == "decoder"
    # the command line's --data / --config / --set replace the plan's; None means "not given"
    _, other = plan(tmp_path, plan="objects", data="clevr-mirror", config_set="backward_max_iter=20", config=None)
    assert (other.data, other.config, other.config_set) == ("clevr-mirror", "cpu-objects", "backward_max_iter=20")


def test_objects_iterations_plan_is_the_objects_study_at_other_iteration_counts(tmp_path):
    suite, objects = plan(tmp_path, plan="objects")
    _, iters = plan(tmp_path, plan="objects-iterations")
    same = ("resolution", "batch_size", "steps", "lr", "data", "config", "config_set", "warmup_steps", "pilot_steps")
    assert all(getattr(iters, f) == getattr(objects, f) for f in same)
    runs = suite._specs(iters)
    assert len(runs) == 18 and {s.iters for s in runs} == {1, 7, 15} and {s.variant for s in runs} == {"vanilla", "IN"}
    assert all(s.clip and s.warmup for s in runs)


def test_backward_max_iter_is_an_architecture_field():
    assert config_for("cpu-objects").backward_max_iter == 7  # the paper's cap stays the default
    with pytest.raises(ValueError, match="backward_max_iter must be a positive int"):
        config_for("cpu-objects", backward_max_iter=0)
