"""The real-data reader benchmark runs end to end on tiny files (its figures are not checked)."""

from __future__ import annotations

import json

import pytest

from benchmarks.suites.readers_suite import READERS

pytest.importorskip("pycocotools")


def test_reader_benchmark_has_one_row_per_reader(all_tiny):
    out, _ = all_tiny
    rows = json.loads((out / "readers" / "results.json").read_text())["tables"]["readers"]["rows"]
    assert [r["reader"] for r in rows] == list(READERS)
    assert all(r["images_per_s"] > 0 and r["resolution"] == 16 for r in rows)
