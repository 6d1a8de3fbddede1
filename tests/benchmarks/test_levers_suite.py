"""The lever loop behind the notebook's object-discovery levers runs, changes the config, and refuses bad input."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main
from benchmarks.suites.levers_suite import run_lever


def test_runs_and_reports_each_evaluation(tmp_path):
    lines = []
    results = run_lever("same-hue", {"config": "cpu-objects", "iters": 2, "attention_guidance_steps": 2}, steps=4,
                        every=2, pool=32, log=lines.append)
    assert [r["step"] for r in results] == [0, 2, 4] and len(lines) == 3
    assert all(0.0 < r["mse"] < 1.0 and -1.0 <= r["fg_ari"] <= 1.0 for r in results)
    doc = main(["levers", "--data", "shapes", "--steps", "2", "--every", "2", "--pool", "16", "--out", str(tmp_path),
                "--no-progress", "decoder_position_frequencies=2"])
    assert doc["settings"]["changes"] == {"decoder_position_frequencies": 2}
    assert [r["step"] for r in json.loads((tmp_path / "results.json").read_text())["tables"]["evaluations"]["rows"]] \
        == [0, 2]


@pytest.mark.parametrize("changes, message", [(["iters"], "FIELD=VALUE"), (["mask_source='nowhere'"], "mask_source")])
def test_bad_changes(tmp_path, capsys, changes, message):
    with pytest.raises(SystemExit) as exit_:
        main(["levers", "--steps", "1", "--pool", "8", "--out", str(tmp_path), "--no-progress", *changes])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
