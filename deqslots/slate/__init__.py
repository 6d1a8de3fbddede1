"""SLATE and implicit SLATE: dVAE tokens, slot attention in the paper's variants, an image-GPT decoder,
generation through the slot bottleneck and FID."""

from .config import SLATE_CONFIGS, SLATEConfig, slate_config_for
from .dvae import DVAE, gumbel_softmax
from .embedding import TokenEmbedding
from .generate import generate_tokens
from .model import SLATE
from .schedule import cosine_anneal
from .transformer import ImageGPTDecoder, KVCache

__all__ = ["SLATE", "SLATEConfig", "SLATE_CONFIGS", "slate_config_for", "DVAE", "gumbel_softmax", "TokenEmbedding",
           "ImageGPTDecoder", "KVCache", "generate_tokens", "cosine_anneal"]
