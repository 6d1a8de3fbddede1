"""Image-GPT decoder of SLATE: a causal pre-LayerNorm transformer with cross-attention to the slots,
and a key/value cache for fast autoregressive generation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Attention", "DecoderBlock", "ImageGPTDecoder", "KVCache", "ACTIVATIONS", "FIRST_BLOCK_NORMS"]


@dataclass
class KVCache:
    """Keys and values already computed during generation, one entry per decoder block.

    ``self_kv[i]`` holds block i's self-attention keys and values of the positions seen so far
    ([B, heads, t, d_head] each); ``cross_kv[i]`` the cross-attention keys and values of the slots, which
    do not change while generating, so they are projected once.

    Attributes:
        self_kv: per block, ``(keys, values)`` of the positions seen so far, or None before block i's first step.
        cross_kv: per block, ``(keys, values)`` of the slots [B, heads, K, d_head] each, or None until first used.

    Examples:
        >>> dec = ImageGPTDecoder(d_model=16, num_blocks=2, num_heads=2).eval()
        >>> cache = dec.new_cache()
        >>> cache.length
        0
        >>> _ = dec(torch.randn(1, 3, 16), torch.randn(1, 4, 16), cache)
        >>> cache.length, tuple(cache.self_kv[1][0].shape), tuple(cache.cross_kv[0][0].shape)
        (3, (1, 2, 3, 8), (1, 2, 4, 8))
    """

    self_kv: list = field(default_factory=list)
    cross_kv: list = field(default_factory=list)

    @property
    def length(self) -> int:
        """Positions already cached (0 before the first step)."""
        return self.self_kv[0][0].shape[2] if self.self_kv and self.self_kv[0] is not None else 0


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value inputs (self- or cross-attention).

    Args:
        d_model: width.
        num_heads: heads; ``d_model`` must be divisible by it.
        dropout: dropout on the output (training only).
        attention_dropout: dropout on the attention weights too, at the same rate (SLATE); on CPU this takes
            PyTorch's slower math attention path in training.

    Raises:
        ValueError: ``d_model`` is not divisible by ``num_heads``.

    Examples:
        >>> attn = Attention(d_model=8, num_heads=2)
        >>> x, slots = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
        >>> tuple(attn(x, attn.keys_values(slots)).shape)  # cross-attention
        (2, 5, 8)
        >>> tuple(attn(x, attn.keys_values(x), causal=True).shape)  # causal self-attention
        (2, 5, 8)
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, attention_dropout: bool = False) -> None:
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.num_heads, self.d_head = num_heads, d_model // num_heads
        self.attention_dropout = dropout if attention_dropout else 0.0
        self.to_q = nn.Linear(d_model, d_model, bias=False)
        self.to_k = nn.Linear(d_model, d_model, bias=False)
        self.to_v = nn.Linear(d_model, d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.out_drop = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.num_heads, self.d_head).transpose(1, 2)

    def keys_values(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Project ``source`` [B, S, d] to per-head keys and values [B, heads, S, d_head].

        Args:
            source: the sequence attended to, [B, S, d_model].

        Returns:
            ``(keys, values)``, each [B, num_heads, S, d_model / num_heads].
        """
        return self._heads(self.to_k(source)), self._heads(self.to_v(source))

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], causal: bool = False
                ) -> torch.Tensor:
        """Attend from queries ``x`` [B, T, d] to keys/values ``kv`` covering S >= T positions.

        With ``causal`` the T queries are the LAST T of the S key positions (S = T without a cache, more
        with one), and query i sees keys up to its own position.

        Args:
            x: queries [B, T, d_model].
            kv: ``(keys, values)`` from :meth:`keys_values`, each [B, num_heads, S, d_head].
            causal: mask each query from the keys after its own position; without it every query sees all S.

        Returns:
            [B, T, d_model]: the heads' outputs merged, projected and (in training) dropped out.
        """
        q = self._heads(self.to_q(x))
        k, v = kv
        t, s = q.shape[2], k.shape[2]
        mask, is_causal = None, False
        if causal and t == s:
            is_causal = t > 1  # the whole sequence at once: the fused causal kernel
        elif causal and t > 1:
            # queries continue a cache: query i is position s - t + i and may see keys 0 .. s - t + i
            rows = torch.arange(s - t, s, device=x.device)[:, None]
            mask = torch.arange(s, device=x.device)[None, :] <= rows
        # (a single query at the end of the cache may see every cached key: no mask at all)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                           dropout_p=self.attention_dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(x.shape[0], t, -1)
        return self.out_drop(self.out(y))


ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}
# "replace": block 0 replaces the residual stream by its LayerNorm (SLATE's is_first); "pre": pre-LN everywhere
FIRST_BLOCK_NORMS = ("replace", "pre")


class DecoderBlock(nn.Module):
    """Pre-LayerNorm block: causal self-attention, cross-attention to the slots, MLP; each residual.

    Args:
        d_model: as :class:`Attention`'s.
        num_heads: as :class:`Attention`'s.
        dropout: as :class:`Attention`'s.
        attention_dropout: as :class:`Attention`'s.
        activation: the MLP's nonlinearity, ``"relu"`` (SLATE) or ``"gelu"``.
        replace_input: replace the residual stream by its LayerNorm before self-attention
            (``x = LN(x); x = x + SA(x)``: SLATE's first block) instead of ``x = x + SA(LN(x))``.

    Raises:
        ValueError: ``d_model`` is not divisible by ``num_heads``.
        KeyError: ``activation`` is not in :data:`ACTIVATIONS`.

    Examples:
        >>> block = DecoderBlock(d_model=8, num_heads=2).eval()
        >>> x, slots = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
        >>> tuple(block(x, slots).shape)
        (2, 5, 8)
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.1, activation: str = "relu",
                 replace_input: bool = False, attention_dropout: bool = False) -> None:
        super().__init__()
        self.replace_input = replace_input
        self.norm_self = nn.LayerNorm(d_model)
        self.self_attn = Attention(d_model, num_heads, dropout, attention_dropout)
        self.norm_cross = nn.LayerNorm(d_model)
        self.cross_attn = Attention(d_model, num_heads, dropout, attention_dropout)
        self.norm_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), ACTIVATIONS[activation](),
                                 nn.Linear(4 * d_model, d_model), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, cache: Optional[KVCache] = None,
                index: int = 0) -> torch.Tensor:
        """Self-attention (causal), cross-attention to ``memory`` and the MLP, each added to ``x``.

        Args:
            x: inputs [B, T, d_model]: the whole sequence, or with a cache the T positions after those cached.
            memory: the projected slots [B, S, d_model] attended to.
            cache: keys and values of earlier calls (:meth:`ImageGPTDecoder.new_cache`); this block's entries
                are read and extended. None: no cache.
            index: this block's entry in ``cache``.

        Returns:
            [B, T, d_model].
        """
        h = self.norm_self(x)
        if self.replace_input:
            x = h
        kv = self.self_attn.keys_values(h)
        if cache is not None:
            if cache.self_kv[index] is not None:
                old_k, old_v = cache.self_kv[index]
                kv = (torch.cat([old_k, kv[0]], dim=2), torch.cat([old_v, kv[1]], dim=2))
            cache.self_kv[index] = kv
        x = x + self.self_attn(h, kv, causal=True)
        if cache is not None:
            if cache.cross_kv[index] is None:
                cache.cross_kv[index] = self.cross_attn.keys_values(memory)
            cross = cache.cross_kv[index]
        else:
            cross = self.cross_attn.keys_values(memory)
        x = x + self.cross_attn(self.norm_cross(x), cross)
        return x + self.mlp(self.norm_mlp(x))


class ImageGPTDecoder(nn.Module):
    """A stack of :class:`DecoderBlock` and a final LayerNorm (image-GPT style, as in SLATE).

    Args:
        d_model: width.
        num_blocks: depth.
        num_heads: attention heads.
        dropout: dropout in attention and MLP.
        activation: the MLPs' nonlinearity (``"relu"``: SLATE).
        first_block_norm: ``"replace"`` (SLATE: block 0 replaces its input by its LayerNorm) or ``"pre"``.
        attention_dropout: also drop the attention weights (SLATE).

    Raises:
        ValueError: ``d_model`` is not divisible by ``num_heads``, ``activation`` is not in :data:`ACTIVATIONS`
            or ``first_block_norm`` is not in :data:`FIRST_BLOCK_NORMS`.

    Examples:
        >>> dec = ImageGPTDecoder(d_model=16, num_blocks=2, num_heads=2).eval()
        >>> x, slots = torch.randn(3, 10, 16), torch.randn(3, 4, 16)
        >>> full = dec(x, slots)
        >>> cache = dec.new_cache()
        >>> steps = torch.cat([dec(x[:, i:i + 1], slots, cache) for i in range(10)], dim=1)
        >>> torch.allclose(full, steps, atol=1e-5)
        True
    """

    def __init__(self, d_model: int, num_blocks: int = 4, num_heads: int = 4, dropout: float = 0.1,
                 activation: str = "relu", first_block_norm: str = "replace", attention_dropout: bool = True) -> None:
        super().__init__()
        for name, value, allowed in (("activation", activation, tuple(ACTIVATIONS)),
                                     ("first_block_norm", first_block_norm, FIRST_BLOCK_NORMS)):
            if value not in allowed:
                raise ValueError(f"ImageGPTDecoder {name} must be one of {', '.join(allowed)}; got {value!r}")
        self.blocks = nn.ModuleList(
            DecoderBlock(d_model, num_heads, dropout, activation, i == 0 and first_block_norm == "replace",
                         attention_dropout) for i in range(num_blocks))
        self.norm = nn.LayerNorm(d_model)

    def new_cache(self) -> KVCache:
        """An empty cache to pass to successive calls of :meth:`forward` while generating.

        Returns:
            A :class:`KVCache` with one empty (None) entry per block.
        """
        return KVCache(self_kv=[None] * len(self.blocks), cross_kv=[None] * len(self.blocks))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, cache: Optional[KVCache] = None) -> torch.Tensor:
        """Decode inputs ``x`` [B, T, d] given ``memory`` [B, S, d] (the projected slots).

        Without ``cache``, ``x`` is the whole sequence and attention is causal within it. With a cache,
        ``x`` continues the positions cached by earlier calls (one or more at a time) and the cache grows.

        Args:
            x: embedded inputs [B, T, d_model].
            memory: the projected slots [B, S, d_model].
            cache: from :meth:`new_cache`, shared by the successive calls of one generation; None: no cache.

        Returns:
            Hidden states [B, T, d] (after the final LayerNorm).
        """
        for i, block in enumerate(self.blocks):
            x = block(x, memory, cache, i)
        return self.norm(x)
