"""The examples in docstrings and README run and print what they say."""

import doctest
import importlib
import pathlib

import pytest
import torch

MODULES = ["solvers.fixed_point", "solvers.decorator", "solvers.variants", "solvers.forward.iterate",
           "solvers.forward.anderson", "solvers.forward.broyden", "solvers.backward.unrolled",
           "solvers.backward.onestep", "solvers.backward.implicit", "solvers.dropout"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_compile_docstring_example():
    # run apart, its namespace kept: doctest.testmod clears a module's namespace after the run, under the guards
    # torch.compile installed on it (an "Exception ignored ... KeyError" at exit)
    import solvers.compile

    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(solvers.compile):
        runner.run(test, clear_globs=False)
    assert runner.tries > 0 and runner.failures == 0


def test_readme_python_blocks_run():
    from tests.test_docs_site import run_python_blocks

    readme = pathlib.Path(__file__).resolve().parents[2] / "README.md"
    assert "```python" in readme.read_text()
    namespace = run_python_blocks(readme)
    layer = namespace["Layer"]()
    assert layer(torch.randn(2, 64)).shape == (2, 64)
