"""SLATE and implicit SLATE: dVAE tokens, slot attention in the paper's variants, an image-GPT decoder,
generation through the slot bottleneck and FID, and its model kind for the training loop (``kind``).

Uses :mod:`solvers`, :mod:`deqslots.nn`, slot attention's iterative module (:mod:`deqslots.slot_attention.module`),
the data and evaluation primitives and, in ``kind`` and ``stages``, the training interface (protocol, schedules,
checkpoints). Independent of the object-discovery autoencoder and of the training loop.
"""

from .config import SLATE_CONFIGS, SLATEConfig, slate_config_for
from .dvae import DVAE, gumbel_softmax
from .embedding import TokenEmbedding
from .generate import generate_tokens
from .model import SLATE
from .transformer import ImageGPTDecoder, KVCache

__all__ = ["SLATE", "SLATEConfig", "SLATE_CONFIGS", "slate_config_for", "DVAE", "gumbel_softmax", "TokenEmbedding",
           "ImageGPTDecoder", "KVCache", "generate_tokens"]
