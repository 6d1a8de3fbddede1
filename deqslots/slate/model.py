"""SLATE (Singh, Deng & Ahn, ICLR 2022) with the slot-attention variants of Chang et al. (2022)."""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from ..nn.inputs import check_images
from ..nn.initialization import slate_reference_
from ..slot_attention.module import SlotAttention
from .config import SLATEConfig
from .dvae import DVAE, gumbel_softmax
from .embedding import TokenEmbedding
from .generate import generate_tokens
from .transformer import ImageGPTDecoder

__all__ = ["SLATE", "STAGES", "UPSAMPLING"]

# What a training step trains (SLATE.set_stage): everything, the dVAE alone, or the rest on frozen dVAE tokens.
STAGES = ("joint", "dvae", "slots")
# How attention over the token grid becomes pixel masks (the config's mask_upsample): F.interpolate's arguments.
UPSAMPLING = {"nearest": dict(mode="nearest"), "bilinear": dict(mode="bilinear", align_corners=False)}


class SLATE(nn.Module):
    """dVAE tokens -> slot attention -> image-GPT decoder that predicts the tokens from the slots.

    - The dVAE maps images to vocabulary logits on an H/4 x W/4 grid; in training a Gumbel-softmax sample
      at temperature ``tau`` is decoded back to pixels (dVAE MSE) and its argmax gives the hard tokens.
      The hard tokens are integers: no gradient reaches the dVAE from the transformer side.
    - Slot attention (``config.variant``: vanilla | IN | BN | BB | IB) groups the embedded tokens
      (dictionary + learned positions, then LayerNorm + MLP) into slots.
    - A causal transformer with cross-attention to the projected slots predicts token i from tokens < i;
      its cross-entropy is summed over tokens and averaged over the batch (SLATE's convention; the paper's
      plateau near 130 for vanilla is in these units).

    Images are in [0, 1]. ``SLATE(config)`` or ``SLATE(variant="IN", ...)`` (changes to the paper
    configuration).

    Args:
        config: the architecture (default: SLATE's, 64x64).
        **changes: fields of :class:`SLATEConfig` to override.

    Examples:
        >>> import torch
        >>> from deqslots import SLATE
        >>> from deqslots.slate import slate_config_for
        >>> model = SLATE(slate_config_for("cpu-small", resolution=16, variant="IN"))
        >>> losses = model(torch.rand(2, 3, 16, 16), tau=1.0)
        >>> sorted(losses)
        ['ce', 'ce_per_token', 'dvae_mse', 'loss']
        >>> out = model.reconstruct(torch.rand(2, 3, 16, 16))
        >>> tuple(out["recon"].shape), tuple(out["masks"].shape)
        ((2, 3, 16, 16), (2, 7, 16, 16))
    """

    def __init__(self, config: Optional[SLATEConfig] = None, **changes: Any) -> None:
        super().__init__()
        config = config or SLATEConfig()
        self.config = c = config.replace(**changes) if changes else config
        self.dvae = DVAE(c.vocab_size, c.dvae_channels, encoder_blocks=c.dvae_encoder_blocks)
        self.embedding = TokenEmbedding(c.vocab_size, c.d_model, c.num_tokens, c.dropout)
        self.slot_input = nn.Sequential(nn.LayerNorm(c.d_model), nn.Linear(c.d_model, c.mlp_hidden), nn.ReLU(),
                                        nn.Linear(c.mlp_hidden, c.d_model))
        self.slot_attention = SlotAttention(c.d_model, c.slot_dim, c.num_slots, c.iters, c.mlp_hidden, c.variant,
                                            eval_iters=c.eval_iters, backward_max_iter=c.backward_max_iter,
                                            attention=c.mask_attention)
        self.slot_proj = nn.Linear(c.slot_dim, c.d_model, bias=False)
        self.decoder = ImageGPTDecoder(c.d_model, c.num_blocks, c.num_heads, c.dropout, c.decoder_activation,
                                       c.first_block_norm, c.attention_dropout)
        self.head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        # slot_input="dvae": the dVAE's hidden features at each token, projected to d_model
        self.feature_proj = nn.Linear(c.dvae_channels, c.d_model) if c.slot_input == "dvae" else None
        self.stage = "joint"
        if c.init == "reference":
            slate_reference_(self)

    def set_stage(self, stage: str) -> "SLATE":
        """Choose what :meth:`forward` trains: ``"joint"`` (everything, SLATE), ``"dvae"`` (the dVAE alone;
        the rest is frozen and its loss is the dVAE's) or ``"slots"`` (slot attention and the decoder on the
        frozen dVAE's deterministic tokens; the loss is the cross-entropy). Frozen parameters get
        ``requires_grad=False``, so optimisers and DistributedDataParallel leave them alone.

        Args:
            stage: one of :data:`STAGES`: ``"joint"``, ``"dvae"`` or ``"slots"``.

        Returns:
            The model (for chaining).

        Raises:
            ValueError: ``stage`` is not in :data:`STAGES`.

        Examples:
            >>> from deqslots.slate import slate_config_for
            >>> model = SLATE(slate_config_for("cpu-slate")).set_stage("slots")
            >>> any(p.requires_grad for p in model.dvae.parameters()), model.head.weight.requires_grad
            (False, True)
        """
        if stage not in STAGES:
            raise ValueError(f"SLATE stage must be one of {', '.join(STAGES)}; got {stage!r}")
        self.stage = stage
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(stage == "joint" or (stage == "dvae") == name.startswith("dvae."))
        return self

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"dvae": ..., "main": ...}``: SLATE trains them with different learning rates (3e-4, 1e-4).

        Returns:
            ``"dvae"``: the dVAE's parameters; ``"main"``: every other parameter (token embedding, slot attention
            and its input MLP, slot projection, decoder, head), each once; frozen ones (:meth:`set_stage`) included.
        """
        dvae = list(self.dvae.parameters())
        ids = {id(p) for p in dvae}
        return {"dvae": dvae, "main": [p for p in self.parameters() if id(p) not in ids]}

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        """Refuse a wrong shape, dtype or value range; returns the images in the parameters' dtype."""
        check_images(images, self.config.resolution, "SLATE", " (set the config's resolution to match the data)")
        return images.to(self.head.weight.dtype)

    def tokenize(self, images: torch.Tensor, tau: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
        """Images -> ``(codes [B, vocab, h, w], tokens [B, N])``.

        In training mode (stages "joint" and "dvae") ``codes`` is a Gumbel-softmax sample at temperature
        ``tau`` (differentiable) and ``tokens`` the argmax of a second, independent sample (the config's
        ``target_tokens="independent"``, SLATE) or of the same one (``"shared"``); in eval mode, and for the
        frozen dVAE of the "slots" stage, ``tokens`` is the argmax of the logits and ``codes`` its one-hot.

        Args:
            images: [B, 3, H, W] in [0, 1] at the config's resolution.
            tau: Gumbel-softmax temperature (> 0), used only where a sample is drawn.

        Returns:
            ``(codes, tokens)``: codes ``[B, vocab, H/4, W/4]`` (soft sample or one-hot, summing to one over
            the vocabulary) and int64 tokens ``[B, N]``, row-major over the grid (token j is cell
            ``(j // grid, j % grid)``); the tokens carry no gradient.

        Raises:
            TypeError: ``images`` is not a floating-point tensor.
            ValueError: ``images`` is not [B, 3, R, R] at the config's resolution, has NaN/Inf values, or values
                more than 0.1 outside [0, 1] (e.g. 0-255).

        Examples:
            >>> import torch
            >>> from deqslots.slate import SLATEConfig
            >>> model = SLATE(SLATEConfig(resolution=8, vocab_size=8, dvae_channels=8, d_model=16, num_blocks=1,
            ...                           num_heads=2, num_slots=3, slot_dim=16, mlp_hidden=16)).eval()
            >>> codes, tokens = model.tokenize(torch.rand(2, 3, 8, 8))
            >>> tuple(codes.shape), tuple(tokens.shape), bool((codes.argmax(dim=1).flatten(1) == tokens).all())
            ((2, 8, 2, 2), (2, 4), True)
        """
        return self._tokenize(self.dvae.encode(self._check(images)), tau)

    def _tokenize(self, logits: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and self.stage != "slots":
            log_probs = logits.log_softmax(dim=1)
            codes = gumbel_softmax(log_probs, tau, dim=1)
            # the argmax of a Gumbel-softmax sample does not depend on tau: a categorical sample
            target = codes if self.config.target_tokens == "shared" else gumbel_softmax(log_probs.detach(), tau, dim=1)
            tokens = target.argmax(dim=1)
        else:
            tokens = logits.argmax(dim=1)
            codes = F.one_hot(tokens, self.config.vocab_size).permute(0, 3, 1, 2).to(logits.dtype)
        # detached by construction (argmax); flattened row-major: token j is grid cell (j // w, j % w)
        return codes, tokens.flatten(1)

    def encode_slots(self, tokens: torch.Tensor, iters: Optional[int] = None,
                     features: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens [B, N] -> ``(embedded sequence [B, N + 1, d], slots [B, K, slot_dim], attn [B, K, N])``.

        ``features``: the dVAE encoder's hidden features [B, dvae_channels, h, w] of the same images, needed
        (and used, detached) when the config's ``slot_input`` is ``"dvae"``.

        Args:
            tokens: int64 token indices [B, N] (N = the config's ``num_tokens``).
            iters: slot-attention iterations (default: the config's ``iters``, or ``eval_iters`` in eval mode).
            features: the dVAE encoder's hidden features [B, dvae_channels, h, w]; ignored unless ``slot_input``
                is ``"dvae"``.

        Returns:
            ``(sequence, slots, attn)``: the embedded ``[BOS, tokens]`` sequence [B, N + 1, d_model] (its first N
            positions are the decoder's teacher-forced input), the slots [B, K, slot_dim] and the slots' attention
            over the tokens [B, K, N] (softmax over slots).

        Raises:
            ValueError: ``slot_input`` is ``"dvae"`` and ``features`` is None.
        """
        sequence = self.embedding.sequence(tokens)
        if self.feature_proj is None:
            inputs = sequence[:, 1:]
        elif features is None:
            raise ValueError("this SLATE groups the dVAE's features (slot_input='dvae'): pass features=, the "
                             "first output of model.dvae.encode_with_features(images)")
        else:
            inputs = self.feature_proj(features.detach().flatten(2).transpose(1, 2)) + self.embedding.position[:, 1:]
        slots, attn = self.slot_attention(self.slot_input(inputs), return_attn=True, iters=iters)
        return sequence, slots, attn

    def forward(self, images: torch.Tensor, tau: float = 0.1, iters: Optional[int] = None
                ) -> dict[str, torch.Tensor]:
        """Training losses for a batch of images [B, 3, H, W] in [0, 1], for the model's stage
        (:meth:`set_stage`).

        Args:
            images: the batch.
            tau: Gumbel-softmax temperature (training mode only; SLATE anneals it 1.0 -> 0.1).
            iters: slot-attention iterations for this call (default: the config's).

        Returns:
            ``loss``, ``ce`` (token cross-entropy summed over tokens, mean over images), ``ce_per_token``
            (ce / N) and ``dvae_mse`` (dVAE squared error summed per image, mean over images); all scalars.
            ``loss`` is dvae_mse + ce ("joint"), dvae_mse ("dvae": ce is not computed and is NaN) or ce
            ("slots": the frozen dVAE's error is not computed and is NaN).

        Raises:
            TypeError: ``images`` is not a floating-point tensor.
            ValueError: ``images`` is not [B, 3, R, R] at the config's resolution, has NaN/Inf values, or values
                more than 0.1 outside [0, 1] (e.g. 0-255).
        """
        images = self._check(images)
        c, batch = self.config, images.shape[0]
        nan = images.new_full((), float("nan"))
        with torch.no_grad() if self.stage == "slots" else contextlib.nullcontext():
            features, logits = self.dvae.encode_with_features(images)
        codes, tokens = self._tokenize(logits, tau)
        dvae_mse = nan if self.stage == "slots" else (self.dvae.decode(codes) - images).pow(2).sum() / batch
        if self.stage == "dvae":
            return {"loss": dvae_mse, "ce": nan, "ce_per_token": nan, "dvae_mse": dvae_mse}
        sequence, slots, _ = self.encode_slots(tokens, iters, features)
        inputs = sequence[:, :-1]
        if self.training and c.token_dropout > 0:
            dropped = torch.rand(tokens.shape, device=tokens.device) < c.token_dropout
            inputs = self.embedding.sequence(tokens.masked_fill(dropped, self.embedding.bos))[:, :-1]
        hidden = self.decoder(inputs, self.slot_proj(slots))
        logits = self.head(hidden)
        ce = F.cross_entropy(logits.reshape(-1, c.vocab_size), tokens.reshape(-1), reduction="sum") / batch
        loss = ce if self.stage == "slots" else dvae_mse + ce
        return {"loss": loss, "ce": ce, "ce_per_token": ce / c.num_tokens, "dvae_mse": dvae_mse}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, iters: Optional[int] = None, use_cache: bool = True
                    ) -> dict[str, torch.Tensor]:
        """Reconstruct through the slot bottleneck: tokens generated from the slots, then dVAE-decoded.

        Runs in eval mode (restoring the previous mode) and without gradients.

        Args:
            images: [B, 3, H, W] in [0, 1].
            iters: slot-attention iterations (default: the config's eval_iters or iters).
            use_cache: generate with the key/value cache (same result, much faster).

        Returns:
            ``recon`` (generated tokens decoded, clamped to [0, 1]), ``recon_dvae`` (the image's own
            tokens decoded: the dVAE's limit), ``tokens`` and ``generated`` [B, N], ``attn`` [B, K, N]
            (attention of the slots over tokens, softmax over slots) and ``masks`` [B, K, H, W] (``attn``
            upsampled to pixels as the config's ``mask_upsample`` says), ``slots`` [B, K, slot_dim].

        Raises:
            TypeError: ``images`` is not a floating-point tensor.
            ValueError: ``images`` is not [B, 3, R, R] at the config's resolution, has NaN/Inf values, or values
                more than 0.1 outside [0, 1] (e.g. 0-255).
        """
        c = self.config
        was_training = self.training
        self.eval()
        try:
            tokens, slots, attn = self.encode_images(images, iters)  # checks the images
            generated, _ = generate_tokens(self.embedding, self.decoder, self.head, self.slot_proj(slots),
                                           c.num_tokens, use_cache=use_cache)
            return {"recon": self.decode_tokens(generated), "recon_dvae": self.decode_tokens(tokens),
                    "tokens": tokens, "generated": generated, "attn": attn, "masks": self.attention_masks(attn),
                    "slots": slots}
        finally:
            self.train(was_training)

    def encode_images(self, images: torch.Tensor, iters: Optional[int] = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images [B, 3, H, W] -> ``(tokens [B, N], slots [B, K, slot_dim], attn [B, K, N])``: the dVAE's tokens
        (as :meth:`tokenize` draws them in the current mode) and the slots bound to them.

        Args:
            images: [B, 3, H, W] in [0, 1] at the config's resolution.
            iters: slot-attention iterations (default: the config's ``iters``, or ``eval_iters`` in eval mode).

        Returns:
            ``(tokens, slots, attn)``: int64 tokens [B, N], slots [B, K, slot_dim] and the slots' attention over
            the tokens [B, K, N] (softmax over slots; :meth:`attention_masks` makes pixel masks of it).

        Raises:
            TypeError: ``images`` is not a floating-point tensor.
            ValueError: ``images`` is not [B, 3, R, R] at the config's resolution, has NaN/Inf values, or values
                more than 0.1 outside [0, 1] (e.g. 0-255).

        Examples:
            >>> import torch
            >>> from deqslots.slate import SLATEConfig
            >>> model = SLATE(SLATEConfig(resolution=8, vocab_size=8, dvae_channels=8, d_model=16, num_blocks=1,
            ...                           num_heads=2, num_slots=3, slot_dim=16, mlp_hidden=16)).eval()
            >>> tokens, slots, attn = model.encode_images(torch.rand(2, 3, 8, 8))
            >>> tuple(tokens.shape), tuple(slots.shape), tuple(attn.shape)
            ((2, 4), (2, 3, 16), (2, 3, 4))
            >>> tuple(model.attention_masks(attn).shape), tuple(model.decode_tokens(tokens).shape)
            ((2, 3, 8, 8), (2, 3, 8, 8))
        """
        features, logits = self.dvae.encode_with_features(self._check(images))
        _, tokens = self._tokenize(logits, 0.1)
        _, slots, attn = self.encode_slots(tokens, iters, features)
        return tokens, slots, attn

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens [B, N] -> images [B, 3, H, W] decoded by the dVAE, clamped to [0, 1].

        Args:
            tokens: int64 token indices [B, N], row-major over the ``grid x grid`` token grid.

        Returns:
            Images [B, 3, H, W] (H = W = the config's resolution) in [0, 1].
        """
        return self.dvae.decode_tokens(tokens, self.config.grid).clamp(0, 1)

    def attention_masks(self, attn: torch.Tensor) -> torch.Tensor:
        """Attention over the token grid [B, K, N] -> pixel masks [B, K, H, W], upsampled as the config's
        ``mask_upsample`` says.

        Args:
            attn: the slots' attention over the tokens [B, K, N], as :meth:`encode_images` returns it.

        Returns:
            Masks [B, K, H, W] at the config's resolution (they still sum to one over K: both upsamplings are
            convex combinations).
        """
        c = self.config
        return F.interpolate(attn.reshape(-1, c.num_slots, c.grid, c.grid), size=(c.resolution, c.resolution),
                             **UPSAMPLING[c.mask_upsample])
