"""The real-data reader benchmark runs end to end on tiny files (its figures are not checked)."""

from __future__ import annotations

import pytest

from benchmarks.reader_throughput import main

pytest.importorskip("pycocotools")


def test_reader_benchmark_prints_one_row_per_reader(tmp_path, capsys):
    main(["--readers", "tetrominoes", "coco", "shapestacks", "--items", "20", "--reads", "10", "--resolution", "16",
          "--workdir", str(tmp_path)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "items/s" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["tetrominoes", "coco", "shapestacks"]
    assert all(float(row.split("|")[2]) > 0 for row in rows)
