"""README's Python blocks run (every docstring example runs in tests/test_docstrings.py)."""

import pathlib

import torch


def test_readme_python_blocks_run():
    from tests.test_docs_site import run_python_blocks

    readme = pathlib.Path(__file__).resolve().parents[2] / "README.md"
    assert "```python" in readme.read_text()
    namespace = run_python_blocks(readme)
    layer = namespace["Layer"]()
    assert layer(torch.randn(2, 64)).shape == (2, 64)
