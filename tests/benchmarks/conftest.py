"""One run of ``python -m benchmarks all --tiny`` shared by the benchmark tests (each suite at its test size)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def all_tiny(tmp_path_factory):
    from benchmarks.__main__ import main

    out = tmp_path_factory.mktemp("bench")
    threads = torch.get_num_threads()
    try:
        doc = main(["all", "--tiny", "--out", str(out), "--no-progress"])
    finally:
        torch.set_num_threads(threads)  # the runner sets it for the whole process
    return out, doc
