"""Docstring examples of the deqslots package run."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["deqslots.slot_attention", "deqslots.autoencoder", "deqslots.schedule",
                                  "deqslots.data", "deqslots.metrics", "deqslots.batches", "deqslots._assignments",
                                  "deqslots.checkpoint"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
