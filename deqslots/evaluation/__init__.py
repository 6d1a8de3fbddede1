"""Evaluation: metrics (FG-ARI, MSE), the colour-only control, FID (``fid``, ``inception``), figures, seeded
evaluation, and :func:`~deqslots.evaluation.evaluate.evaluate`, which scores any registered model.

``metrics``, ``colour_control``, ``fid``, ``inception``, ``figures`` and ``eval_mode`` are primitives: they use
torch, numpy, scikit-learn, matplotlib, PyTorch-Ignite and :mod:`deqslots.data` only, and the models use them.
``evaluate`` sits above the models (it asks the registry for a model's kind). This ``__init__`` imports nothing,
so a model importing a metric does not load the registry.
"""
