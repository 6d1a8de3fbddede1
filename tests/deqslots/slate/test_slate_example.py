"""examples/train_slate.py runs end to end with a tiny budget."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_train_slate_example(tmp_path):
    figure = tmp_path / "grid.png"
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "train_slate.py"), "--steps", "2", "--batch-size",
                             "2", "--figure", str(figure)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "val MSE through slots" in result.stdout and "IN SLATE" in result.stdout and "vanilla SLATE" in result.stdout
    assert figure.exists()
