"""The suites of ``python -m benchmarks``: every benchmark of the project, one door.

Each suite module exposes ``run(ctx, bar) -> SuiteResult`` and ``TABLES`` (table name -> declared columns, or
None where the columns follow the measured rows), and optionally ``DEFAULT_SIZE`` (the size run without
``--quick`` / ``--full``; default ``full``) and ``OPTIONS`` (its own options, :class:`~benchmarks.suites.common.Option`
data, which reach it as ``ctx.overrides``). No suite imports another: what two suites share lives in
:mod:`benchmarks.suites.common`.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType, ModuleType

__all__ = ["SUITES", "SUITE_MODULES", "load_suite"]

# name -> (module, one-line summary for `python -m benchmarks --help`), in the order `all` runs them
SUITES = MappingProxyType({
    "solvers": ("benchmarks.suites.solvers_suite",
                "forward solvers: ours vs torchdeq and scipy.optimize on problems with known answers"),
    "backward": ("benchmarks.suites.backward_suite",
                 "backward modes: memory and time vs iterations, gradient fidelity, adjoint solvers"),
    "variants": ("benchmarks.suites.variants_suite",
                 "training stability of the five slot-attention variants (spectral radius, clipping ablation)"),
    "solver-perf": ("benchmarks.suites.solver_perf_suite",
                    "ours vs torchdeq: forward solves, an IFT training step, scipy f-evaluations, saved bytes, "
                    "solver overhead"),
    "deq-features": ("benchmarks.suites.deq_features_suite",
                     "what compaction of converged samples and weights-once-per-solve cost or save"),
    "deq-classifier": ("benchmarks.suites.deq_classifier_suite",
                       "which backward mode: step cost and accuracy after a fixed budget, tiny tanh DEQ classifier"),
    "slot-attention": ("benchmarks.suites.slot_attention_suite",
                       "slot-attention autoencoder: training steps/s per variant, saved bytes, data vs consumption"),
    "slate": ("benchmarks.suites.slate_suite",
              "SLATE: generation with/without the KV cache, steps/s per variant, IN vs vanilla over seeds"),
    "slate-variants": ("benchmarks.suites.slate_variants_suite",
                       "Figure 3b at CPU scale: token CE against step per SLATE variant, slots trained on one "
                       "frozen dVAE, over seeds"),
    "profile": ("benchmarks.suites.profile_suite",
                "where a training step spends its time, phase by phase, with torch.profiler's top ops"),
    "ddp": ("benchmarks.suites.ddp_suite",
            "multi-process training speed (torchrun + DDP) and checkpoint write/read cost"),
    "data": ("benchmarks.suites.data_suite", "images/s of each procedural generator on one process"),
    "readers": ("benchmarks.suites.readers_suite",
                "images/s of each real-data reader on files written in the exact published formats"),
    "levers": ("benchmarks.suites.levers_suite",
               "one config change at a time: short training of the autoencoder, val MSE and FG-ARI at equal steps"),
    "gpu": ("benchmarks.suites.gpu_suite",
            "what only a GPU can measure, in 8 minutes; without a GPU it says so and runs a CPU dry-run"),
})
SUITE_MODULES = MappingProxyType({name: module for name, (module, _) in SUITES.items()})


def load_suite(name: str) -> ModuleType:
    """Import a suite lazily (several pull in the training code)."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)} or all")
    return importlib.import_module(SUITES[name][0])
