"""Token embedding of SLATE: a learned dictionary over the vocabulary plus a BOS token, and learned
positions."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TokenEmbedding"]


class TokenEmbedding(nn.Module):
    """Embeds token indices as ``dictionary[token] + position[p]`` with dropout.

    A lookup table is the one-hot dictionary of SLATE (a linear map of one-hot vectors) without forming
    the one-hot vectors. Index ``vocab_size`` is the BOS token. Position 0 belongs to BOS and token j of
    an image sits at position j + 1, both as a slot-attention input and as a decoder input, so the
    decoder input at position i is token i - 1 and its output there predicts token i.

    Args:
        vocab_size: dVAE vocabulary (BOS is added on top).
        d_model: embedding width.
        num_tokens: tokens per image.
        dropout: dropout on the sum.

    Examples:
        >>> emb = TokenEmbedding(vocab_size=10, d_model=8, num_tokens=4)
        >>> tuple(emb.sequence(torch.zeros(2, 4, dtype=torch.long)).shape)
        (2, 5, 8)
    """

    def __init__(self, vocab_size: int, d_model: int, num_tokens: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.vocab_size, self.num_tokens = vocab_size, num_tokens
        self.dictionary = nn.Embedding(vocab_size + 1, d_model)
        self.position = nn.Parameter(torch.zeros(1, num_tokens + 1, d_model))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.dropout = nn.Dropout(dropout)

    @property
    def bos(self) -> int:
        """Index of the BOS token."""
        return self.vocab_size

    def sequence(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [B, N] -> embeddings of [BOS, t_0, ..., t_{N-1}] at positions 0..N: [B, N + 1, d].

        Args:
            tokens: int64 indices in [0, vocab_size] (``vocab_size`` is BOS), [B, N] with N <= ``num_tokens``.

        Returns:
            ``dictionary[token] + position[p]`` for the BOS-prefixed sequence, dropout applied: [B, N + 1, d_model].
        """
        bos = torch.full_like(tokens[:, :1], self.bos)
        seq = torch.cat([bos, tokens], dim=1)
        return self.dropout(self.dictionary(seq) + self.position[:, : seq.shape[1]])

    def at(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """Tokens [B] (or BOS) placed at one ``position`` -> [B, 1, d] (for step-wise generation).

        Args:
            tokens: int64 indices [B] in [0, vocab_size] (``vocab_size`` is BOS).
            position: the sequence position, 0 (BOS) to ``num_tokens``.

        Returns:
            ``dictionary[tokens] + position[position]`` with dropout: [B, 1, d_model]. Equal to
            ``sequence(...)[:, position:position + 1]`` for the same token there (in eval mode).

        Examples:
            >>> emb = TokenEmbedding(vocab_size=10, d_model=8, num_tokens=4).eval()
            >>> tokens = torch.tensor([[3, 1, 4, 1]])
            >>> torch.allclose(emb.at(tokens[:, 1], 2), emb.sequence(tokens)[:, 2:3])
            True
        """
        return self.dropout(self.dictionary(tokens[:, None]) + self.position[:, position:position + 1])
