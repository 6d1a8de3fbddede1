"""Autoregressive (greedy) generation of image tokens given slots, with or without a key/value cache."""

from __future__ import annotations

import torch
from torch import nn

from .embedding import TokenEmbedding
from .transformer import ImageGPTDecoder

__all__ = ["generate_tokens"]


@torch.no_grad()
def generate_tokens(embedding: TokenEmbedding, decoder: ImageGPTDecoder, head: nn.Module, memory: torch.Tensor,
                    num_tokens: int, use_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``num_tokens`` tokens one at a time, each the argmax given the previous ones and the slots.

    SLATE reconstructs through the slot bottleneck this way (greedy decoding). With ``use_cache`` every
    step feeds only the newest token and reuses the keys and values of earlier positions (and the slots'
    cross-attention keys and values), so a step costs O(t) instead of re-running the whole prefix, O(t^2).
    Both paths give the same tokens (the cache only avoids recomputation).

    Call it with the modules in eval mode (dropout off); it runs under ``torch.no_grad``.

    Args:
        embedding: the token embedding (its BOS starts the sequence).
        decoder: the image-GPT decoder.
        head: maps decoder states [B, T, d] to vocabulary logits.
        memory: the projected slots [B, K, d].
        num_tokens: tokens to generate (at most ``embedding.num_tokens``).
        use_cache: reuse keys and values across steps.

    Returns:
        ``(tokens [B, num_tokens] int64, logits [B, num_tokens, vocab])``.

    Raises:
        ValueError: ``num_tokens`` is more than ``embedding.num_tokens``.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from deqslots.slate import ImageGPTDecoder, TokenEmbedding
        >>> _ = torch.manual_seed(0)
        >>> embedding = TokenEmbedding(vocab_size=8, d_model=16, num_tokens=4).eval()
        >>> decoder = ImageGPTDecoder(d_model=16, num_blocks=1, num_heads=2).eval()
        >>> head = nn.Linear(16, 8)
        >>> slots = torch.randn(2, 3, 16)
        >>> tokens, logits = generate_tokens(embedding, decoder, head, slots, num_tokens=4)
        >>> tuple(tokens.shape), tuple(logits.shape), bool((tokens == logits.argmax(dim=-1)).all())
        ((2, 4), (2, 4, 8), True)
        >>> torch.equal(tokens, generate_tokens(embedding, decoder, head, slots, 4, use_cache=False)[0])
        True
    """
    if num_tokens > embedding.num_tokens:
        raise ValueError(f"can generate at most {embedding.num_tokens} tokens; asked for {num_tokens}")
    batch = memory.shape[0]
    previous = torch.full((batch,), embedding.bos, dtype=torch.long, device=memory.device)
    tokens, logits = [], []
    cache = decoder.new_cache() if use_cache else None
    inputs: list[torch.Tensor] = []
    for position in range(num_tokens):
        step_input = embedding.at(previous, position)
        if use_cache:
            hidden = decoder(step_input, memory, cache)
        else:
            inputs.append(step_input)
            hidden = decoder(torch.cat(inputs, dim=1), memory)[:, -1:]
        step_logits = head(hidden)[:, 0]
        previous = step_logits.argmax(dim=-1)
        tokens.append(previous)
        logits.append(step_logits)
    return torch.stack(tokens, dim=1), torch.stack(logits, dim=1)
