"""The object-discovery autoencoder's architecture (:class:`AutoencoderConfig`), its named configurations and
their training recipes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, Optional

from ..nn.fields import replace_fields
from ..nn.initialization import check_init
from .module import SLOT_INITS, VARIANTS

__all__ = ["AutoencoderConfig", "CONFIGS", "RECIPES", "config_for", "MASK_SOURCES", "TRANSPOSED_PADDINGS"]

MASK_SOURCES = ("decoder", "attention")
# How the decoder's stride-2 transposed convs align their 2x output: "same" = TensorFlow's padding="SAME"
# (Slot Attention's code); "torch" = PyTorch's padding=k // 2, output_padding=1 (one pixel shifted from TF's).
TRANSPOSED_PADDINGS = ("same", "torch")


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of :class:`SlotAutoencoder`.

    Attributes:
        resolution: square image size (a power of two times ``broadcast``).
        channels: encoder channels (and decoder channels unless ``decoder_channels`` is set).
        encoder_strides: stride of each encoder conv (Slot Attention: all 1).
        encoder_kernel: kernel size of the encoder convs (Slot Attention: 5; 1 = per-pixel features).
        broadcast: spatial size each slot is tiled to before the decoder (8 in Slot Attention).
        num_slots: number of slots K (passed to :class:`SlotAttention`, as are the next four).
        slot_dim: slot size.
        iters: slot-attention iterations in training (Broyden: f evaluations).
        mlp_hidden: hidden size of slot attention's residual MLP.
        variant: the solver variant: ``"vanilla"``, ``"IN"``, ``"BN"``, ``"BB"`` or ``"IB"`` (:data:`VARIANTS`).
        eval_iters: iterations at evaluation (None = ``iters``).
        decoder_channels: decoder channels (None = ``channels``).
        decoder_kernel: kernel size of the decoder's transposed convs (Slot Attention: 5).
        decoder_resolution: size the decoder upsamples to (capped at ``resolution``); below ``resolution``
            its output is resized bilinearly (None = ``resolution``, as in Slot Attention).
        decoder_refine: stride-1 transposed convs after the upsampling ones (Slot Attention: 1).
        mask_source: where the mixture masks come from: ``"decoder"`` (each slot's decoded alpha, softmaxed
            over slots: Slot Attention) or ``"attention"`` (slot attention's own attention over the encoder
            grid, resized bilinearly to the image). With ``"attention"`` the reconstruction is
            sum_k attn_k * rgb_k, so the reconstruction loss trains the grouping directly, as a soft
            k-means objective; this is what lets ``cpu-small`` discover objects in minutes on a CPU (see
            docs/benchmarks/history.md). Masks are then as coarse as the encoder grid.
        decoder_position_frequencies: Fourier features of the decoder's position embedding (0 = Slot
            Attention's linear [x, y, 1 - x, 1 - y] grid); see :class:`SoftPositionEmbedding`.
        attention_guidance_steps: with ``mask_source="decoder"``: for the first N training steps
            :meth:`SlotAutoencoder.loss` adds the reconstruction mixed by slot attention's own attention
            (as ``mask_source="attention"`` would), weighted 1 at step 0 and falling linearly to 0 at step N.
            The attention differs between slots from the first step, so the slots' decoded colours
            specialise at once, and the decoder's masks then leave the mean-colour plateau where
            without it they stay for thousands of steps (docs/benchmarks/history.md). Only the loss changes; the
            architecture and the masks used after step N are Slot Attention's. 0 = off.
        slot_init: ``"gaussian"`` (Slot Attention: initial slots sampled from one learned Gaussian) or
            ``"learned"`` (one learned vector per slot, BO-QSA); see :class:`SlotAttention`.
        backward_max_iter: cap of the adjoint Broyden solve of the BB / IB variants (the paper's 7); raise
            it (e.g. ``--set backward_max_iter=50``) for an adjoint that converges rather than stops at the cap.
        init: how a fresh model's weights are drawn (:data:`deqslots.nn.initialization.INITS`): ``"reference"``
            (Slot Attention's code: Keras' defaults, :func:`deqslots.nn.initialization.keras_defaults_`) or
            ``"torch"`` (PyTorch's layer defaults, as every model before this field).
        layer_norm_eps: epsilon of the encoder's LayerNorm and of slot attention's three (Keras' 1e-3, as Slot
            Attention's code; PyTorch's 1e-5 before this field).
        transposed_padding: alignment of the decoder's stride-2 transposed convs (:data:`TRANSPOSED_PADDINGS`):
            ``"same"`` (TensorFlow's ``padding="SAME"``, Slot Attention's code: of the full transposed output,
            (k - 2) // 2 pixels are cropped at the start and the rest at the end, leaving exactly 2x) or
            ``"torch"`` (``padding=k // 2, output_padding=1``: 2x too, but one pixel shifted, as every model
            before this field). Stride-1 convs are the same either way.

    The defaults are the authors' choices (Locatello et al.'s TensorFlow code); :attr:`LEGACY` gives the
    values of every model built before the fields ``init``, ``layer_norm_eps`` and ``transposed_padding``.

    Raises:
        ValueError: on construction, when ``resolution`` (at least 8) or ``decoder_resolution`` is not
            ``broadcast`` times a power of two, ``encoder_strides`` is empty, holds a value other than 1 or 2
            or does not divide ``resolution``, a kernel size is not an odd positive int, ``variant``,
            ``mask_source``, ``slot_init``, ``init`` or ``transposed_padding`` is not one of its choices,
            ``decoder_position_frequencies`` is not an int in 0..8, ``attention_guidance_steps`` is negative or
            set without ``mask_source="decoder"``, ``backward_max_iter`` is not a positive int,
            ``layer_norm_eps`` is not a number > 0, or ``decoder_refine`` is negative.

    Examples:
        >>> from deqslots.slot_attention.config import AutoencoderConfig
        >>> config = AutoencoderConfig(resolution=32, num_slots=4)
        >>> config.decoder_size, config.replace(decoder_resolution=16).decoder_size
        (32, 16)
        >>> AutoencoderConfig(resolution=48)
        Traceback (most recent call last):
            ...
        ValueError: resolution must be broadcast (8) times a power of two; got 48
    """

    # What every model built before these fields existed had (checkpoints that predate them were trained so).
    LEGACY: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {"init": "torch", "layer_norm_eps": 1e-5, "transposed_padding": "torch"})

    resolution: int = 64
    channels: int = 64
    encoder_strides: tuple[int, ...] = (1, 1, 1, 1)
    broadcast: int = 8
    num_slots: int = 7
    slot_dim: int = 64
    iters: int = 3
    mlp_hidden: int = 128
    variant: str = "vanilla"
    eval_iters: Optional[int] = None
    encoder_kernel: int = 5
    decoder_channels: Optional[int] = None
    decoder_kernel: int = 5
    decoder_resolution: Optional[int] = None
    decoder_refine: int = 1
    mask_source: str = "decoder"
    attention_guidance_steps: int = 0
    decoder_position_frequencies: int = 0
    slot_init: str = "gaussian"
    backward_max_iter: int = 7
    init: str = "reference"
    layer_norm_eps: float = 1e-3
    transposed_padding: str = "same"

    def __post_init__(self) -> None:
        ups = self.resolution / self.broadcast
        if self.resolution < 8 or ups < 1 or 2 ** round(math.log2(ups)) != ups:
            raise ValueError(
                f"resolution must be broadcast ({self.broadcast}) times a power of two; got {self.resolution}"
            )
        if not self.encoder_strides or any(s not in (1, 2) for s in self.encoder_strides):
            raise ValueError(f"encoder_strides must be a non-empty tuple of 1s and 2s; got {self.encoder_strides}")
        if self.resolution % math.prod(self.encoder_strides):
            raise ValueError("the encoder strides must divide the resolution")
        if self.mask_source not in MASK_SOURCES:
            raise ValueError(f"mask_source must be one of {', '.join(MASK_SOURCES)}; got {self.mask_source!r}")
        for name in ("encoder_kernel", "decoder_kernel"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
                raise ValueError(f"{name} must be an odd positive int (same-size padding); got {value!r}")
        frequencies = self.decoder_position_frequencies
        if isinstance(frequencies, bool) or not isinstance(frequencies, int) or not 0 <= frequencies <= 8:
            raise ValueError(f"decoder_position_frequencies must be an int in 0..8; got {frequencies!r}")
        guidance = self.attention_guidance_steps
        if isinstance(guidance, bool) or not isinstance(guidance, int) or guidance < 0:
            raise ValueError(f"attention_guidance_steps must be an int >= 0; got {guidance!r}")
        if guidance and self.mask_source != "decoder":
            raise ValueError("attention_guidance_steps guides the decoder's masks: it needs mask_source='decoder'")
        cap = self.backward_max_iter
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise ValueError(f"backward_max_iter must be a positive int; got {cap!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {self.variant!r}")
        if self.slot_init not in SLOT_INITS:
            raise ValueError(f"slot_init must be one of {', '.join(SLOT_INITS)}; got {self.slot_init!r}")
        check_init(self.init, "init")
        eps = self.layer_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:  # NaN fails too
            raise ValueError(f"layer_norm_eps must be a number > 0 (Keras' 1e-3, PyTorch's 1e-5); got {eps!r}")
        if self.transposed_padding not in TRANSPOSED_PADDINGS:
            raise ValueError(f"transposed_padding must be one of {', '.join(TRANSPOSED_PADDINGS)} (TensorFlow's "
                             f"SAME or PyTorch's padding); got {self.transposed_padding!r}")
        if isinstance(self.decoder_refine, bool) or not isinstance(self.decoder_refine, int) or self.decoder_refine < 0:
            raise ValueError(f"decoder_refine must be an int >= 0; got {self.decoder_refine!r}")
        out = self.decoder_size
        ups = out / self.broadcast
        if ups < 1 or 2 ** round(math.log2(ups)) != ups:
            raise ValueError(f"decoder_resolution must be broadcast ({self.broadcast}) times a power of two; "
                             f"got {self.decoder_resolution}")

    @property
    def decoder_size(self) -> int:
        """The size the decoder's convolutions produce (before any resize to ``resolution``)."""
        # capped so that a named config keeps working when its resolution is overridden downwards
        return min(self.decoder_resolution or self.resolution, self.resolution)

    def replace(self, **changes) -> "AutoencoderConfig":
        """A copy with some fields changed (unknown names are an error).

        Args:
            **changes (Any): new field values by field name.

        Returns:
            The new config (validated as on construction).

        Raises:
            TypeError: a name in ``changes`` is not a field.
            ValueError: the changed config is invalid (see the class).
        """
        return replace_fields(self, "config", **changes)


# Discovers objects in minutes on a 2-core CPU (docs/benchmarks/notebook.md, "Object discovery on a CPU"): per-pixel
# features (1x1 convs) at full resolution, masks from slot attention's own attention, and a small decoder
# that paints each slot's colour at 16x16. Like every CPU config it keeps the initialisation, LayerNorm epsilon
# and transposed-conv alignment it was measured (and its pretrained weights trained) with: AutoencoderConfig.LEGACY.
_CPU_SMALL = AutoencoderConfig(resolution=32, channels=32, encoder_strides=(1, 1), encoder_kernel=1, num_slots=7,
                               slot_dim=32, iters=7, mlp_hidden=64, decoder_kernel=3, decoder_resolution=16,
                               decoder_refine=0, mask_source="attention", **AutoencoderConfig.LEGACY)

# Slot Attention's decoder masks on a CPU (docs/benchmarks/notebook.md, "Objects, not colours"): cpu-small's per-pixel
# encoder and small decoder to 16x16, whose alpha channel now gives the masks, 3 iterations, and attention
# guidance for the first 3,000 steps, without which the masks stay on the mean-colour plateau. (A decoder twice
# as wide with one more layer ran 1.6x slower and was no better at equal steps.)
_CPU_OBJECTS = _CPU_SMALL.replace(mask_source="decoder", iters=3, attention_guidance_steps=3000)

# Named configurations: the paper's (Locatello et al.'s object-discovery autoencoder as their TensorFlow code
# computes it: AutoencoderConfig's defaults, tests/deqslots/slot_attention/test_slot_attention_parity.py) at three
# sizes, and the light ones for CPUs.
_PAPER = AutoencoderConfig()
CONFIGS = {
    "paper-128": _PAPER.replace(resolution=128),
    "paper-64": _PAPER.replace(resolution=64),
    "paper-32": _PAPER.replace(resolution=32),
    "cpu-small": _CPU_SMALL,
    "cpu-objects": _CPU_OBJECTS,
    # The same with Slot Attention's decoder masks (alpha channel, decoded at 32x32): the ablation of
    # docs/benchmarks/history.md, which stays at the mean-colour plateau.
    "cpu-small-decoder-masks": _CPU_SMALL.replace(mask_source="decoder", decoder_resolution=None),
}


# The training recipe of each named config: what `deqslots train --config NAME` uses for the settings not given.
# The CPU configs: the one they were measured with (docs/benchmarks/history.md). The paper configs: the authors'
# (slot_attention/object_discovery/train.py: Adam 4e-4, batch 64, 500k steps, linear warm-up over 10k steps,
# lr halved every 100k steps, no clipping), which would take days on a CPU.
_CPU_RECIPE = dict(lr=6e-4, warmup_steps=200, decay_steps=0, batch_size=16, eval_every=500, eval_batches=8)
_PAPER_RECIPE = MappingProxyType(dict(lr=4e-4, batch_size=64, steps=500_000, warmup_steps=10_000,
                                      decay_steps=100_000, eval_every=5_000, eval_batches=8))  # clipping: off
RECIPES = MappingProxyType({
    # 10 minutes on 2 cores (about 20 steps/s): object discovery where colour separates objects
    "cpu-small": MappingProxyType({**_CPU_RECIPE, "steps": 10_000}),
    # about 30 minutes on 2 cores (about 8-11 steps/s): the decoder's masks need the longer budget
    "cpu-objects": MappingProxyType({**_CPU_RECIPE, "steps": 15_000}),
    "paper-128": _PAPER_RECIPE,
    "paper-64": _PAPER_RECIPE,
    "paper-32": _PAPER_RECIPE,
})


def config_for(name: str, **changes) -> AutoencoderConfig:
    """Look up a named configuration and apply ``changes``.

    Args:
        name: a key of :data:`CONFIGS` (``"paper-128"``, ``"paper-64"``, ``"paper-32"``, ``"cpu-small"``,
            ``"cpu-objects"``, ``"cpu-small-decoder-masks"``).
        **changes (Any): field values to override, as :meth:`AutoencoderConfig.replace` takes them.

    Returns:
        The named config with ``changes`` applied (the shared instance itself when there are none).

    Raises:
        ValueError: ``name`` is not a named config, or the changed config is invalid.
        TypeError: a name in ``changes`` is not a field.

    Examples:
        >>> from deqslots.slot_attention.config import config_for
        >>> config = config_for("cpu-small", num_slots=4)
        >>> config.resolution, config.num_slots, config.mask_source
        (32, 4, 'attention')
        >>> config_for("paper-64").iters
        3
    """
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}")
    return CONFIGS[name].replace(**changes) if changes else CONFIGS[name]
