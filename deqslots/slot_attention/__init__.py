"""Slot attention: the iterative module (``module``: :class:`SlotAttention`, the fixed-point map solved by
:mod:`solvers`), the object-discovery autoencoder built on it (``autoencoder``, ``config``: architecture, named
configurations and their recipes) and its model kind for the training loop (``kind``).

Uses :mod:`solvers`, :mod:`deqslots.nn`, the evaluation primitives and, in ``kind`` only, the training protocol.
Independent of :mod:`deqslots.slate`, which builds on ``module`` alone.

Examples:
    >>> from deqslots.slot_attention import SlotAutoencoder, config_for
    >>> SlotAutoencoder(config_for("cpu-small")).config.num_slots
    7
"""

from .autoencoder import SlotAutoencoder
from .config import CONFIGS, RECIPES, AutoencoderConfig, config_for
from .module import SLOT_INITS, VARIANTS, SlotAttention

__all__ = ["SlotAttention", "VARIANTS", "SLOT_INITS", "SlotAutoencoder", "AutoencoderConfig", "CONFIGS", "RECIPES",
           "config_for"]
