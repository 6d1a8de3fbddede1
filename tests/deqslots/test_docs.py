"""Docstring examples of the deqslots package run."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["deqslots.slot_attention.module", "deqslots.slot_attention.autoencoder",
                                  "deqslots.training.schedule", "deqslots.data", "deqslots.evaluation.metrics",
                                  "deqslots.data.batches", "deqslots.data.assignments", "deqslots.training.checkpoint"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
