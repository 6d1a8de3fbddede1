"""The lever loop behind BENCHMARKS.md's object-discovery table runs, changes the config, and refuses bad input."""

from __future__ import annotations

import json

from benchmarks.discovery_levers import main, run_lever


def test_runs_and_reports_each_evaluation(tmp_path):
    lines = []
    results = run_lever("same-hue", {"config": "cpu-objects", "iters": 2, "attention_guidance_steps": 2}, steps=4,
                        every=2, pool=32, log=lines.append)
    assert [r["step"] for r in results] == [0, 2, 4] and len(lines) == 3
    assert all(0.0 < r["mse"] < 1.0 and -1.0 <= r["fg_ari"] <= 1.0 for r in results)
    out = tmp_path / "r.json"
    assert main(["--data", "shapes", "--steps", "2", "--every", "2", "--pool", "16", "--json", str(out),
                 "decoder_position_frequencies=2"]) == 0
    assert len(json.loads(out.read_text())) == 2


def test_bad_changes(capsys):
    assert main(["--steps", "1", "iters"]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err
    assert main(["--steps", "1", "--pool", "8", "mask_source='nowhere'"]) == 2
    assert "mask_source" in capsys.readouterr().err
