"""deqslots: implicit slot attention and SLATE on top of the `solvers` library."""

from .slot_attention import VARIANTS, SlotAttention

__all__ = ["SlotAttention", "VARIANTS"]
from .autoencoder import CONFIGS, AutoencoderConfig, SlotAutoencoder, config_for  # noqa: E402

__all__ += ["SlotAutoencoder", "AutoencoderConfig", "CONFIGS", "config_for"]
from .slate import SLATE, SLATE_CONFIGS, SLATEConfig, slate_config_for  # noqa: E402

__all__ += ["SLATE", "SLATEConfig", "SLATE_CONFIGS", "slate_config_for"]
