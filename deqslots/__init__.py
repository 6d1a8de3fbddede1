"""deqslots: implicit slot attention and SLATE on top of the `solvers` library.

The packages, from the top (the layers are written down in ``pyproject.toml`` and checked by ``lint-imports``):
``cli`` and ``demo``; ``pretrained`` (shipped weights); ``training`` (the run's config, the loop, checkpoints, the
model-kind protocol and registry); the two models, ``slot_attention`` and ``slate``, independent of each other
(SLATE builds on slot attention's module only) and of the loop; ``nn``, ``evaluation`` and ``data`` below them.
"""

from importlib.metadata import version as _version

from .slate import SLATE, SLATE_CONFIGS, SLATEConfig, slate_config_for
from .slot_attention import CONFIGS, VARIANTS, AutoencoderConfig, SlotAttention, SlotAutoencoder, config_for

__version__ = _version("deqslots")  # pyproject.toml's [project] version, the one place it is written

__all__ = ["__version__", "SlotAttention", "VARIANTS", "SlotAutoencoder", "AutoencoderConfig", "CONFIGS", "config_for",
           "SLATE", "SLATEConfig", "SLATE_CONFIGS", "slate_config_for"]
