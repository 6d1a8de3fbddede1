"""examples/fixed_point_correction.py runs and its supervised iterates train the early solver steps."""

import importlib.util
import pathlib
import warnings

import solvers

PATH = pathlib.Path(__file__).resolve().parents[2] / "examples" / "fixed_point_correction.py"


def test_example_runs_and_correction_helps_early_iterates(capsys):
    spec = importlib.util.spec_from_file_location("fixed_point_correction", PATH)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", solvers.ConvergenceWarning)
        results = example.main(["--steps", "60", "--seed", "1"])
    assert "with correction" in capsys.readouterr().out
    plain, corrected = results["fixed point only"], results["with correction"]
    assert all(0 < v < 1 for row in results.values() for v in row.values())
    assert corrected[2] < plain[2]  # the iterates it supervised are better
