"""SLATE's discrete VAE: images to a grid of vocabulary logits and back, with a Gumbel-softmax relaxation."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DVAE", "gumbel_softmax"]


def gumbel_softmax(log_probs: torch.Tensor, tau: float, dim: int = 1,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A relaxed one-hot sample: ``softmax((log_probs + Gumbel noise) / tau)`` over ``dim``.

    Its argmax over ``dim`` is an exact sample of the categorical distribution, so the hard tokens and the
    soft sample the dVAE decoder sees come from the same draw.

    Args:
        log_probs: log-probabilities (or logits) with the categories on ``dim``.
        tau: temperature (> 0); lower is closer to one-hot.
        dim: the category dimension.
        generator: optional RNG for the noise (default: torch's global RNG).

    Returns:
        A tensor like ``log_probs`` that sums to one over ``dim``.

    Raises:
        ValueError: ``tau`` is not > 0.

    Examples:
        >>> s = gumbel_softmax(torch.zeros(2, 5, 3, 3), tau=0.5)
        >>> torch.allclose(s.sum(dim=1), torch.ones(2, 3, 3))
        True
    """
    if not tau > 0:
        raise ValueError(f"Gumbel-softmax temperature must be > 0; got {tau}")
    uniform = torch.rand(log_probs.shape, generator=generator, device=log_probs.device, dtype=log_probs.dtype)
    # clamp keeps -log(-log(u)) finite at u = 0 or 1
    tiny = torch.finfo(log_probs.dtype).tiny
    gumbel = -torch.log(-torch.log(uniform.clamp(tiny, 1.0 - 1e-7)))
    return F.softmax((log_probs + gumbel) / tau, dim=dim)


class _ConvBlock(nn.Sequential):
    """Conv (bias-free) + single-group GroupNorm + ReLU: normalisation that does not couple batch-mates."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=False),
                         nn.GroupNorm(1, out_ch), nn.ReLU())


class DVAE(nn.Module):
    """Discrete VAE of SLATE: a 4x4 stride-4 conv and 1x1 conv blocks to vocabulary logits on an
    H/4 x W/4 grid; a decoder of 1x1 / 3x3 conv blocks with two pixel-shuffle x2 upsamplings back to RGB.

    Args:
        vocab_size: number of tokens.
        channels: hidden channels (SLATE: 64).
        encoder_blocks: 1x1 conv blocks after the 4x4 / 4 block in the encoder (SLATE: 6).
        decoder_blocks: 1x1 conv blocks after each 3x3 block of the decoder, before the one that widens for
            the pixel shuffle (SLATE: 2).

    Examples:
        >>> dvae = DVAE(vocab_size=16, channels=8)
        >>> logits = dvae.encode(torch.rand(2, 3, 32, 32))
        >>> tuple(logits.shape), tuple(dvae.decode(logits.softmax(dim=1)).shape)
        ((2, 16, 8, 8), (2, 3, 32, 32))
    """

    def __init__(self, vocab_size: int, channels: int = 64, encoder_blocks: int = 6, decoder_blocks: int = 2) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        c = channels
        self.encoder = nn.Sequential(
            _ConvBlock(3, c, 4, stride=4),
            *[_ConvBlock(c, c, 1) for _ in range(encoder_blocks)],
            nn.Conv2d(c, vocab_size, 1),
        )

        def up() -> list[nn.Module]:
            # 3x3 for spatial context, 1x1 blocks, then x2 by pixel shuffle
            return [_ConvBlock(c, c, 3, padding=1), *[_ConvBlock(c, c, 1) for _ in range(decoder_blocks)],
                    _ConvBlock(c, 4 * c, 1), nn.PixelShuffle(2)]

        self.decoder = nn.Sequential(_ConvBlock(vocab_size, c, 1), *up(), *up(), nn.Conv2d(c, 3, 1))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> vocabulary logits [B, vocab, H/4, W/4].

        Args:
            images: [B, 3, H, W] in [0, 1], H and W multiples of 4.

        Returns:
            Unnormalised logits over the vocabulary [B, vocab_size, H/4, W/4].
        """
        return self.encoder(images)

    def encode_with_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images -> ``(hidden features [B, channels, H/4, W/4], logits [B, vocab, H/4, W/4])``: the last
        hidden layer of the encoder, from which the logits are a 1x1 convolution.

        Args:
            images: [B, 3, H, W] in [0, 1], H and W multiples of 4.

        Returns:
            ``(features, logits)``: features [B, channels, H/4, W/4] (after the last ReLU) and the logits
            [B, vocab_size, H/4, W/4] that :meth:`encode` returns.
        """
        features = self.encoder[:-1](images)
        return features, self.encoder[-1](features)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Soft or one-hot codes [B, vocab, h, w] -> images [B, 3, 4h, 4w] (unclamped, ~[0, 1]).

        Args:
            codes: [B, vocab_size, h, w], e.g. a Gumbel-softmax sample or one-hot tokens.

        Returns:
            Images [B, 3, 4h, 4w], not clamped.
        """
        return self.decoder(codes)

    def decode_tokens(self, tokens: torch.Tensor, grid: int) -> torch.Tensor:
        """Token indices [B, grid * grid] (row-major) -> images [B, 3, 4 grid, 4 grid].

        Args:
            tokens: int64 indices in [0, vocab_size), [B, grid * grid] (or any shape with B * grid * grid
                elements), row-major over the grid.
            grid: side of the token grid.

        Returns:
            Images [B, 3, 4 grid, 4 grid] (one-hot codes decoded; not clamped).

        Examples:
            >>> dvae = DVAE(vocab_size=16, channels=8)
            >>> tuple(dvae.decode_tokens(torch.zeros(2, 9, dtype=torch.long), grid=3).shape)
            (2, 3, 12, 12)
        """
        one_hot = F.one_hot(tokens.reshape(-1, grid, grid), self.vocab_size).permute(0, 3, 1, 2)
        return self.decode(one_hot.to(self.decoder[-1].weight.dtype))
