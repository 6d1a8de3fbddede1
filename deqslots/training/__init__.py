"""Training: what defines a run, the loop that runs it, and what a model provides to be trained.

Owns :class:`~deqslots.training.config.TrainConfig` (``config``), the loop (``loop``:
:func:`~deqslots.training.loop.train`), checkpoints, the multi-process context (``distributed``), schedules, clean
stops (``interrupts``), metrics.csv (``metrics_log``), and the model-kind protocol with its registry. Layers
(``pyproject.toml``, checked by ``lint-imports``): ``protocol``, ``schedule``, ``checkpoint``, ``distributed`` and
``strict_json`` are the interface the model packages build on and import nothing of deqslots above data and
evaluation primitives; ``registry`` names the model kinds; ``config`` and ``loop`` sit above the models. This
package's ``__init__`` imports nothing, so a model importing the protocol does not load the loop (which imports the
models).
"""
