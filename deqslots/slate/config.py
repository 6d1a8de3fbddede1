"""Architecture of SLATE as a frozen dataclass, with named configurations (the paper's and a CPU one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..slot_attention import VARIANTS
from .._replace import replace_fields

__all__ = ["SLATEConfig", "SLATE_CONFIGS", "slate_config_for", "SLOT_INPUTS", "MASK_UPSAMPLING"]

SLOT_INPUTS = ("embedding", "dvae")
MASK_UPSAMPLING = ("nearest", "bilinear")


@dataclass(frozen=True)
class SLATEConfig:
    """Architecture of :class:`deqslots.SLATE`.

    Defaults are SLATE's (Singh, Deng & Ahn, ICLR 2022) at 64x64: vocabulary 1024, d_model 192, 4 decoder
    blocks with 4 heads, dropout 0.1, slot size 192, 3 slot-attention iterations.

    Attributes:
        resolution: square image size; a multiple of 4 (the dVAE works on an H/4 x W/4 token grid).
        vocab_size: dVAE codebook size.
        dvae_channels: hidden channels of the dVAE encoder and decoder.
        d_model: token-embedding and transformer width.
        num_blocks, num_heads: image-GPT decoder depth and attention heads.
        dropout: dropout of the token embedding and the decoder.
        num_slots, slot_dim, mlp_hidden, iters, variant, eval_iters, backward_max_iter: passed to
            :class:`deqslots.SlotAttention` ("vanilla" | "IN" | "BN" | "BB" | "IB"; backward_max_iter caps BB /
            IB's adjoint Broyden solve, 7 as in the paper).
        slot_input: what slot attention groups: ``"embedding"`` (SLATE: the decoder's learned token
            dictionary plus learned positions) or ``"dvae"`` (the dVAE encoder's hidden features at each token,
            detached, projected, plus the same learned positions: features that already describe the patch
            when training starts, instead of a dictionary learned through the slots).
        token_dropout: in training, each teacher-forced decoder input token is replaced by BOS (no
            information) with this probability, so that the decoder must take what it lost from the slots;
            slot attention still sees every token. 0 = off (SLATE).
        mask_upsample: how the attention over the token grid becomes pixel masks: ``"nearest"`` (blocks of
            4x4 pixels) or ``"bilinear"`` (smooth boundaries between tokens; FG-ARI counts pixels).

    Examples:
        >>> from deqslots.slate import slate_config_for
        >>> c = slate_config_for("cpu-small", variant="IN")
        >>> c.num_tokens, c.vocab_size, c.variant
        (256, 128, 'IN')
    """

    resolution: int = 64
    vocab_size: int = 1024
    dvae_channels: int = 64
    d_model: int = 192
    num_blocks: int = 4
    num_heads: int = 4
    dropout: float = 0.1
    num_slots: int = 7
    slot_dim: int = 192
    mlp_hidden: int = 192
    iters: int = 3
    variant: str = "vanilla"
    eval_iters: Optional[int] = None
    backward_max_iter: int = 7
    slot_input: str = "embedding"
    token_dropout: float = 0.0
    mask_upsample: str = "nearest"

    def __post_init__(self) -> None:
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or self.resolution < 4 \
                or self.resolution % 4:
            raise ValueError(f"SLATE resolution must be a positive multiple of 4 (tokens on an H/4 grid); "
                             f"got {self.resolution!r}")
        for name in ("vocab_size", "dvae_channels", "d_model", "num_blocks", "num_heads", "num_slots", "slot_dim",
                     "mlp_hidden", "iters", "backward_max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SLATE {name} must be a positive int; got {value!r}")
        if self.vocab_size < 2:
            raise ValueError(f"SLATE vocab_size must be at least 2; got {self.vocab_size}")
        if self.d_model % self.num_heads:
            raise ValueError(f"SLATE d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SLATE dropout must be in [0, 1); got {self.dropout}")
        if self.variant not in VARIANTS:
            raise ValueError(f"SLATE variant must be one of {', '.join(VARIANTS)}; got {self.variant!r}")
        if self.eval_iters is not None and (not isinstance(self.eval_iters, int) or self.eval_iters < 1):
            raise ValueError(f"SLATE eval_iters must be a positive int or None; got {self.eval_iters!r}")
        if self.slot_input not in SLOT_INPUTS:
            raise ValueError(f"SLATE slot_input must be one of {', '.join(SLOT_INPUTS)}; got {self.slot_input!r}")
        if isinstance(self.token_dropout, bool) or not isinstance(self.token_dropout, (int, float)) \
                or not 0.0 <= self.token_dropout < 1.0:
            raise ValueError(f"SLATE token_dropout must be in [0, 1); got {self.token_dropout!r}")
        if self.mask_upsample not in MASK_UPSAMPLING:
            raise ValueError(f"SLATE mask_upsample must be one of {', '.join(MASK_UPSAMPLING)}; "
                             f"got {self.mask_upsample!r}")

    @property
    def grid(self) -> int:
        """Side of the token grid (resolution / 4)."""
        return self.resolution // 4

    @property
    def num_tokens(self) -> int:
        """Tokens per image: (resolution / 4) ** 2, e.g. 256 at 64x64."""
        return self.grid ** 2

    def replace(self, **changes) -> "SLATEConfig":
        """A copy with some fields changed (unknown names are an error)."""
        return replace_fields(self, "SLATE config", **changes)


# The paper's sizes (SLATE's hyper-parameters; 96x96 for Chang et al.'s Table 3) and one that trains on a
# 2-core CPU in minutes: 64x64 images still give 256 tokens, but with a small vocabulary and a narrow model.
SLATE_CONFIGS = {
    "paper-64": SLATEConfig(resolution=64),
    "paper-96": SLATEConfig(resolution=96),
    "cpu-small": SLATEConfig(resolution=64, vocab_size=128, dvae_channels=32, d_model=64, num_blocks=2,
                             num_heads=2, slot_dim=64, mlp_hidden=64),
    # 32x32 -> 8x8 = 64 tokens: a fourth of cpu-small's sequence, so training in stages and generating from
    # the slots take minutes (issue #12; BENCHMARKS.md "SLATE on a CPU").
    "cpu-slate": SLATEConfig(resolution=32, vocab_size=64, dvae_channels=32, d_model=64, num_blocks=2, num_heads=2,
                             slot_dim=64, mlp_hidden=64, mask_upsample="bilinear"),
}


def slate_config_for(name: str, **changes) -> SLATEConfig:
    """Look up a named SLATE configuration and apply ``changes``.

    Args:
        name: one of ``SLATE_CONFIGS`` ("cpu-small", "cpu-slate", "paper-64", "paper-96").
        **changes: fields to override, e.g. ``variant="IN"``.

    Returns:
        The configuration.

    Examples:
        >>> slate_config_for("paper-96").num_tokens
        576
    """
    if name not in SLATE_CONFIGS:
        raise ValueError(f"unknown SLATE config {name!r}; choose one of {', '.join(SLATE_CONFIGS)}")
    return SLATE_CONFIGS[name].replace(**changes) if changes else SLATE_CONFIGS[name]
