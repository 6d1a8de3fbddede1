"""Architecture of SLATE as a frozen dataclass, with named configurations (the paper's and a CPU one)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, Optional

from ..nn.initialization import check_init
from ..slot_attention.module import ATTENTION_RETURNED, VARIANTS
from ..nn.fields import replace_fields
from .transformer import ACTIVATIONS as ACTIVATION_LAYERS, FIRST_BLOCK_NORMS

__all__ = ["SLATEConfig", "SLATE_CONFIGS", "SLATE_RECIPES", "slate_config_for", "SLOT_INPUTS", "MASK_UPSAMPLING",
           "ACTIVATIONS", "FIRST_BLOCK_NORMS", "TARGET_TOKENS"]

SLOT_INPUTS = ("embedding", "dvae")
MASK_UPSAMPLING = ("nearest", "bilinear")
ACTIVATIONS = tuple(ACTIVATION_LAYERS)  # the decoder's nonlinearities, by name
# "independent": the decoder's targets are the argmax of a second Gumbel sample (SLATE); "shared": of the one the
# dVAE decoder sees
TARGET_TOKENS = ("independent", "shared")


@dataclass(frozen=True)
class SLATEConfig:
    """Architecture of :class:`deqslots.SLATE`.

    Defaults are SLATE's (Singh, Deng & Ahn, ICLR 2022) at 64x64, as its authors' code (singhgautam/slate)
    computes it: vocabulary 1024, d_model 192, 4 decoder blocks with 4 heads, dropout 0.1, slot size 192, 3
    slot-attention iterations, the dVAE encoder's six 1x1 blocks, a ReLU feed-forward network, block 0
    replacing its input by its LayerNorm, dropout on the attention weights, the last iteration's attention as
    masks, targets from a second Gumbel sample and the authors' initialisation (``tests/deqslots/slate/
    test_slate_parity.py`` proves it against a transcription of their code). The CPU configurations deviate
    field by field (docs/slate.md, "SLATE: the authors' model and the CPU configs"); :attr:`LEGACY` holds the values
    of every model built before these fields existed.

    Attributes:
        resolution: square image size; a multiple of 4 (the dVAE works on an H/4 x W/4 token grid).
        vocab_size: dVAE codebook size.
        dvae_channels: hidden channels of the dVAE encoder and decoder.
        d_model: token-embedding and transformer width.
        num_blocks: image-GPT decoder depth (blocks).
        num_heads: attention heads of the decoder; ``d_model`` must be divisible by it.
        dropout: dropout of the token embedding and the decoder, in [0, 1).
        num_slots: slots K, passed to :class:`deqslots.SlotAttention` like the next six.
        slot_dim: slot width.
        mlp_hidden: hidden width of slot attention's MLP and of the MLP on the slot-attention inputs.
        iters: slot-attention iterations in training.
        variant: slot-attention variant, "vanilla" | "IN" | "BN" | "BB" | "IB".
        eval_iters: iterations in eval mode (None: ``iters``).
        backward_max_iter: cap on BB / IB's adjoint Broyden solve (7 as in the paper).
        slot_input: what slot attention groups: ``"embedding"`` (SLATE: the decoder's learned token
            dictionary plus learned positions) or ``"dvae"`` (the dVAE encoder's hidden features at each token,
            detached, projected, plus the same learned positions: features that already describe the patch
            when training starts, instead of a dictionary learned through the slots).
        token_dropout: in training, each teacher-forced decoder input token is replaced by BOS (no
            information) with this probability, so that the decoder must take what it lost from the slots;
            slot attention still sees every token. 0 = off (SLATE).
        mask_upsample: how the attention over the token grid becomes pixel masks: ``"nearest"`` (blocks of
            4x4 pixels) or ``"bilinear"`` (smooth boundaries between tokens; FG-ARI counts pixels).
        dvae_encoder_blocks: 1x1 conv blocks after the dVAE encoder's 4x4 / 4 block (SLATE: 6).
        decoder_activation: the decoder feed-forward network's nonlinearity, ``"relu"`` (SLATE) or ``"gelu"``.
        first_block_norm: ``"replace"`` (SLATE: decoder block 0 replaces the residual stream by its LayerNorm,
            ``x = LN(x); x = x + SA(x)``) or ``"pre"`` (plain pre-LayerNorm in every block).
        attention_dropout: also drop the decoder's attention weights (SLATE), not only its outputs; on CPU this
            takes PyTorch's slower math attention path in training.
        mask_attention: the attention returned as masks: ``"last_step"`` (SLATE: the last iteration's,
            computed from the slots before its update) or ``"final_slots"`` (recomputed from the final slots).
        target_tokens: the decoder's training targets: ``"independent"`` (SLATE: the argmax of a second,
            independent Gumbel sample) or ``"shared"`` (the argmax of the sample the dVAE decoder sees). In eval
            mode and in the "slots" stage both are the argmax of the logits (deterministic metrics).
        init: ``"reference"`` (SLATE's initialisation, :func:`deqslots.nn.initialization.slate_reference_`) or
            ``"torch"`` (PyTorch's defaults and a positional embedding of std 0.02).

    Raises:
        ValueError: a field out of range or not among its choices (e.g. a resolution that is not a positive
            multiple of 4, ``d_model`` not divisible by ``num_heads``, an unknown variant); the message names it.

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
    dvae_encoder_blocks: int = 6
    decoder_activation: str = "relu"
    first_block_norm: str = "replace"
    attention_dropout: bool = True
    mask_attention: str = "last_step"
    target_tokens: str = "independent"
    init: str = "reference"

    # What every model built before these fields existed had (our earlier SLATE): a checkpoint that does not
    # record a field was trained with this value.
    LEGACY: ClassVar[Mapping[str, object]] = MappingProxyType(dict(
        dvae_encoder_blocks=4, decoder_activation="gelu", first_block_norm="pre", attention_dropout=False,
        mask_attention="final_slots", target_tokens="shared", init="torch"))

    def __post_init__(self) -> None:
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, int) or self.resolution < 4 \
                or self.resolution % 4:
            raise ValueError(f"SLATE resolution must be a positive multiple of 4 (tokens on an H/4 grid); "
                             f"got {self.resolution!r}")
        for name in ("vocab_size", "dvae_channels", "d_model", "num_blocks", "num_heads", "num_slots", "slot_dim",
                     "mlp_hidden", "iters", "backward_max_iter", "dvae_encoder_blocks"):
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
        if self.eval_iters is not None and (isinstance(self.eval_iters, bool) or not isinstance(self.eval_iters, int)
                                            or self.eval_iters < 1):
            raise ValueError(f"SLATE eval_iters must be a positive int or None; got {self.eval_iters!r}")
        if self.slot_input not in SLOT_INPUTS:
            raise ValueError(f"SLATE slot_input must be one of {', '.join(SLOT_INPUTS)}; got {self.slot_input!r}")
        if isinstance(self.token_dropout, bool) or not isinstance(self.token_dropout, (int, float)) \
                or not 0.0 <= self.token_dropout < 1.0:
            raise ValueError(f"SLATE token_dropout must be in [0, 1); got {self.token_dropout!r}")
        for name, allowed in (("mask_upsample", MASK_UPSAMPLING), ("decoder_activation", ACTIVATIONS),
                              ("first_block_norm", FIRST_BLOCK_NORMS), ("mask_attention", ATTENTION_RETURNED),
                              ("target_tokens", TARGET_TOKENS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"SLATE {name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if not isinstance(self.attention_dropout, bool):
            raise ValueError(f"SLATE attention_dropout must be True or False; got {self.attention_dropout!r}")
        check_init(self.init, "SLATE init")

    @property
    def grid(self) -> int:
        """Side of the token grid (resolution / 4)."""
        return self.resolution // 4

    @property
    def num_tokens(self) -> int:
        """Tokens per image: (resolution / 4) ** 2, e.g. 256 at 64x64."""
        return self.grid ** 2

    def replace(self, **changes: Any) -> "SLATEConfig":
        """A copy with some fields changed (unknown names are an error).

        Args:
            **changes: fields and their new values, e.g. ``variant="IN"``.

        Returns:
            The new configuration (validated again); ``self`` is unchanged.

        Raises:
            TypeError: a name that is not a field.
            ValueError: a value the field refuses (as the constructor checks).

        Examples:
            >>> SLATEConfig().replace(resolution=32).num_tokens
            64
        """
        return replace_fields(self, "SLATE config", **changes)


# The paper's sizes (SLATE's model; 96x96 for Chang et al.'s Table 3) and ones that train on a 2-core CPU in
# minutes: 64x64 images still give 256 tokens, but with a small vocabulary and a narrow model. cpu-slate has the
# authors' architecture and initialisation at that size: measured better than ours on same-hue (issue #22;
# docs/slate.md, "SLATE: the authors' model and the CPU configs"). cpu-small keeps the architecture it was
# measured with (SLATEConfig.LEGACY): nothing has measured it otherwise.
_LEGACY = SLATEConfig(**SLATEConfig.LEGACY)
SLATE_CONFIGS = {
    "paper-64": SLATEConfig(resolution=64),
    "paper-96": SLATEConfig(resolution=96),
    "cpu-small": _LEGACY.replace(resolution=64, vocab_size=128, dvae_channels=32, d_model=64, num_blocks=2,
                                 num_heads=2, slot_dim=64, mlp_hidden=64),
    # 32x32 -> 8x8 = 64 tokens: a fourth of cpu-small's sequence, so training in stages and generating from
    # the slots take minutes (issue #12; docs/benchmarks/notebook.md, "SLATE on a CPU").
    "cpu-slate": SLATEConfig(resolution=32, vocab_size=64, dvae_channels=32, d_model=64, num_blocks=2,
                             num_heads=2, slot_dim=64, mlp_hidden=64, mask_upsample="bilinear"),
}


# The recipe each named configuration trains with when a flag is not given (``deqslots train --model slate --config
# NAME``); the kind's defaults (lr 1e-4, dVAE 3e-4 without warm-up, inf-norm clipping at 1.0) fill the rest. The
# paper configs take SLATE's train.py: batch 50, warm-up and temperature annealing over 30,000 steps, both rates
# halved after 4 evaluations without a better validation loss (SLATE counts epochs: here one evaluation every
# 5,000 steps, 250,000 images at batch 50), and Chang et al.'s 250,000 steps.
_PAPER_RECIPE = MappingProxyType(dict(steps=250_000, batch_size=50, warmup_steps=30_000, tau_steps=30_000,
                                      decay_steps=0, lr_plateau_patience=4, eval_every=5_000, eval_batches=8))
SLATE_RECIPES = MappingProxyType({"paper-64": _PAPER_RECIPE, "paper-96": _PAPER_RECIPE})


def slate_config_for(name: str, **changes: Any) -> SLATEConfig:
    """Look up a named SLATE configuration and apply ``changes``.

    Args:
        name: one of ``SLATE_CONFIGS`` ("cpu-small", "cpu-slate", "paper-64", "paper-96").
        **changes: fields to override, e.g. ``variant="IN"``.

    Returns:
        The configuration.

    Raises:
        ValueError: ``name`` is not in ``SLATE_CONFIGS``, or a change has an invalid value.
        TypeError: a change names no field of :class:`SLATEConfig`.

    Examples:
        >>> slate_config_for("paper-96").num_tokens
        576
    """
    if name not in SLATE_CONFIGS:
        raise ValueError(f"unknown SLATE config {name!r}; choose one of {', '.join(SLATE_CONFIGS)}")
    return SLATE_CONFIGS[name].replace(**changes) if changes else SLATE_CONFIGS[name]
