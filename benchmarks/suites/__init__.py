"""The suites of ``python -m benchmarks``: solvers, backward, variants.

Each suite module exposes ``run(ctx, bar) -> SuiteResult`` and ``TABLES`` (table name -> columns), which
the runner and the tests use.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType, ModuleType

__all__ = ["SUITE_MODULES", "load_suite"]

SUITE_MODULES = MappingProxyType({"solvers": "benchmarks.suites.solvers_suite", "backward": "benchmarks.suites.backward_suite",
                 "variants": "benchmarks.suites.variants_suite"})


def load_suite(name: str) -> ModuleType:
    """Import a suite lazily (the variants suite pulls in the training code)."""
    if name not in SUITE_MODULES:
        raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITE_MODULES)} or all")
    return importlib.import_module(SUITE_MODULES[name])
