"""The example scripts run end to end (with a tiny budget)."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_train_slot_attention_example(tmp_path):
    figure = tmp_path / "grid.png"
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "train_slot_attention.py"), "--steps", "2",
                             "--batch-size", "4", "--figure", str(figure)], capture_output=True, text=True,
                            timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "val FG-ARI" in result.stdout and figure.exists()
