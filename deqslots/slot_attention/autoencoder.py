"""The object-discovery autoencoder of Slot Attention: CNN encoder, slot attention, broadcast decoder."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.inputs import check_images
from ..nn.initialization import keras_defaults_
from .config import AutoencoderConfig
from .module import SlotAttention

__all__ = ["SlotAutoencoder", "SoftPositionEmbedding", "SameConvTranspose2d"]


class SoftPositionEmbedding(nn.Module):
    """Adds a linear map of the grid [x, y, 1 - x, 1 - y] to channel-last features [B, H, W, C].

    With ``frequencies = F > 0`` the grid also holds sin and cos of 2^f pi x and 2^f pi y for f < F (Fourier
    features), so that a shallow decoder can draw masks with curved, local boundaries; with the linear grid
    alone a slot's alpha is close to a linear function of position and the masks cut the image into convex
    cells (docs/benchmarks/history.md).

    Args:
        channels: C, the feature size the projected grid is added to.
        size: side of the square grid (H = W of the features).
        frequencies: F, the number of Fourier octaves (0 = the linear grid alone, 4 features per position;
            otherwise 4 + 4F).

    Examples:
        >>> import torch
        >>> from deqslots.slot_attention.autoencoder import SoftPositionEmbedding
        >>> pos = SoftPositionEmbedding(channels=8, size=4, frequencies=2)
        >>> tuple(pos.grid.shape), tuple(pos(torch.zeros(2, 4, 4, 8)).shape)
        ((4, 4, 12), (2, 4, 4, 8))
    """

    def __init__(self, channels: int, size: int, frequencies: int = 0) -> None:
        super().__init__()
        axis = torch.linspace(0.0, 1.0, size)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        features = [xx, yy, 1.0 - xx, 1.0 - yy]
        for f in range(frequencies):
            for coord in (xx, yy):
                features += [torch.sin(2.0 ** f * math.pi * coord), torch.cos(2.0 ** f * math.pi * coord)]
        grid = torch.stack(features, dim=-1)
        self.register_buffer("grid", grid, persistent=False)
        self.proj = nn.Linear(grid.shape[-1], channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the projected position grid.

        Args:
            x: channel-last features [B, size, size, channels].

        Returns:
            ``x`` plus the linear map of the grid, same shape.
        """
        return x + self.proj(self.grid)


class SameConvTranspose2d(nn.ConvTranspose2d):
    """A transposed conv aligned as TensorFlow's ``Conv2DTranspose(padding="SAME")``: output exactly ``stride`` x.

    TF's SAME transposed conv is the adjoint of the SAME conv from the ``stride * n`` output to the ``n`` input,
    whose padding totals ``pad = k - stride`` (for ``k >= stride``) with ``pad // 2`` before and the rest after:
    so of the full transposed output (``(n - 1) * stride + k`` long) it drops ``pad // 2`` at the start and
    ``pad - pad // 2`` at the end. Built with ``padding = pad // 2`` (which drops that many at both ends), this
    keeps the first ``stride * n`` rows and columns. The weights are an ``nn.ConvTranspose2d``'s (same names).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size k (at least ``stride``).
        stride: upsampling factor.

    Raises:
        ValueError: ``kernel_size < stride``.

    Examples:
        >>> import torch
        >>> from deqslots.slot_attention.autoencoder import SameConvTranspose2d
        >>> up = SameConvTranspose2d(4, 2, kernel_size=5, stride=2)
        >>> tuple(up(torch.zeros(1, 4, 8, 8)).shape)
        (1, 2, 16, 16)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        if kernel_size < stride:
            raise ValueError(f"SameConvTranspose2d needs kernel_size >= stride; got {kernel_size} < {stride}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(kernel_size - stride) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Upsample by exactly ``stride``, aligned as TensorFlow's SAME transposed conv.

        Args:
            x: features [B, in_channels, H, W].

        Returns:
            Features [B, out_channels, stride * H, stride * W].
        """
        s = self.stride[0]
        return super().forward(x)[..., :s * x.shape[-2], :s * x.shape[-1]]


class SlotAutoencoder(nn.Module):
    """Encoder -> slot attention -> spatial broadcast decoder with per-slot RGB and alpha masks.

    Images are in [0, 1]; the model works in [-1, 1] internally as Slot Attention does, and returns
    reconstructions in [0, 1].

    Args:
        config: the architecture (see :func:`~deqslots.slot_attention.config.config_for` for the named ones).

    Examples:
        >>> import torch
        >>> from deqslots.slot_attention.autoencoder import SlotAutoencoder
        >>> from deqslots.slot_attention.config import config_for
        >>> model = SlotAutoencoder(config_for("cpu-small", variant="IN"))
        >>> out = model(torch.rand(2, 3, 32, 32))
        >>> tuple(out["recon"].shape), tuple(out["masks"].shape), tuple(out["slots"].shape)
        ((2, 3, 32, 32), (2, 7, 32, 32), (2, 7, 32))
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = c = config
        layers: list[nn.Module] = []
        in_ch = 3
        for stride in c.encoder_strides:
            layers += [nn.Conv2d(in_ch, c.channels, c.encoder_kernel, stride=stride, padding=c.encoder_kernel // 2),
                       nn.ReLU()]
            in_ch = c.channels
        self.encoder = nn.Sequential(*layers)
        self.feature_size = feat = c.resolution // math.prod(c.encoder_strides)
        self.encoder_pos = SoftPositionEmbedding(c.channels, feat)
        self.encoder_norm = nn.LayerNorm(c.channels, eps=c.layer_norm_eps)
        self.encoder_mlp = nn.Sequential(nn.Linear(c.channels, c.channels), nn.ReLU(),
                                         nn.Linear(c.channels, c.channels))
        self.slot_attention = SlotAttention(c.channels, c.slot_dim, c.num_slots, c.iters, c.mlp_hidden,
                                            c.variant, eval_iters=c.eval_iters, init=c.slot_init,
                                            backward_max_iter=c.backward_max_iter, layer_norm_eps=c.layer_norm_eps)
        self.decoder_pos = SoftPositionEmbedding(c.slot_dim, c.broadcast, c.decoder_position_frequencies)
        ups = int(round(math.log2(c.decoder_size // c.broadcast)))
        width, kernel = c.decoder_channels or c.channels, c.decoder_kernel
        dec: list[nn.Module] = []
        in_ch = c.slot_dim
        for _ in range(ups):
            if c.transposed_padding == "same":
                up: nn.Module = SameConvTranspose2d(in_ch, width, kernel, stride=2)
            else:
                up = nn.ConvTranspose2d(in_ch, width, kernel, stride=2, padding=kernel // 2, output_padding=1)
            dec += [up, nn.ReLU()]
            in_ch = width
        for _ in range(c.decoder_refine):
            dec += [nn.ConvTranspose2d(in_ch, width, kernel, stride=1, padding=kernel // 2), nn.ReLU()]
            in_ch = width
        dec += [nn.ConvTranspose2d(in_ch, 4, 3, stride=1, padding=1)]
        self.decoder = nn.Sequential(*dec)
        if c.init == "reference":
            keras_defaults_(self)  # Slot Attention's code: Keras' defaults (after PyTorch drew its own)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> input features [B, N, channels].

        Args:
            images: [B, 3, R, R] in [0, 1], R = ``config.resolution``; cast to the model's dtype.

        Returns:
            The encoder's features with positions added, LayerNormed and passed through its MLP:
            [B, N, channels], N = (R / prod(``encoder_strides``)) ** 2 in row-major order.

        Raises:
            TypeError: ``images`` is not a floating-point tensor.
            ValueError: ``images`` is not [B, 3, R, R], or holds NaN/Inf or values outside [0, 1].
        """
        c = self.config
        check_images(images, c.resolution, "SlotAutoencoder",
                     " (build the model with config_for(..., resolution=R) to match the data)")
        images = images.to(self.encoder[0].weight.dtype)  # float64 data into a float32 model, say
        x = self.encoder(images * 2.0 - 1.0).permute(0, 2, 3, 1)  # channel-last
        x = self.encoder_pos(x).flatten(1, 2)
        return self.encoder_mlp(self.encoder_norm(x))

    def decode(self, slots: torch.Tensor, attn: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Slots [B, K, D] -> reconstruction [B, 3, H, W] in [0, 1], masks [B, K, H, W], per-slot RGB.

        Args:
            slots: slots [B, K, slot_dim].
            attn: slot attention's attention [B, K, N] over the encoder grid; required when
                ``mask_source="attention"`` (it becomes the masks), ignored otherwise.

        Returns:
            ``recon`` [B, 3, R, R] and per-slot ``rgb`` [B, K, 3, R, R], both mapped back from [-1, 1] to
            [0, 1] (not clamped), and ``masks`` [B, K, R, R] summing to one over K (the decoded alphas
            softmaxed over slots, or the resized attention).

        Raises:
            ValueError: ``mask_source="attention"`` and ``attn`` is None.
        """
        c = self.config
        batch, k, d = slots.shape
        size = c.broadcast
        x = slots.reshape(batch * k, 1, 1, d).expand(-1, size, size, -1)
        x = self.decoder_pos(x).permute(0, 3, 1, 2)
        out = self.decoder(x)
        if c.decoder_size != c.resolution:
            out = F.interpolate(out, size=(c.resolution, c.resolution), mode="bilinear", align_corners=False)
        out = out.reshape(batch, k, 4, c.resolution, c.resolution)
        rgb, alpha = out[:, :, :3], out[:, :, 3]
        if c.mask_source == "attention":
            if attn is None:
                raise ValueError("this model's masks are its slot attention (mask_source='attention'): pass attn")
            masks = self.attention_masks(attn)
        else:
            masks = alpha.softmax(dim=1)
        recon = (rgb * masks.unsqueeze(2)).sum(dim=1)
        return {"recon": (recon + 1.0) / 2.0, "masks": masks, "rgb": (rgb + 1.0) / 2.0}

    def attention_masks(self, attn: torch.Tensor) -> torch.Tensor:
        """Slot attention's attention [B, K, N] over the encoder grid as image-sized masks [B, K, H, W].

        Args:
            attn: attention [B, K, N], N = ``feature_size ** 2`` (row-major over the encoder grid).

        Returns:
            Masks [B, K, R, R], R = ``config.resolution``, resized bilinearly from the grid.
        """
        batch, k, _ = attn.shape
        grid, size = self.feature_size, self.config.resolution
        return F.interpolate(attn.reshape(batch, k, grid, grid), size=(size, size), mode="bilinear",
                             align_corners=False)

    def loss(self, images: torch.Tensor, step: int, out: Optional[dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """The training loss at optimisation step ``step``: per-pixel MSE of the reconstruction.

        With ``attention_guidance_steps = N > 0``, plus ``(1 - step / N)`` times the MSE of the
        reconstruction that mixes the same per-slot colours by slot attention's attention, for step < N.

        Args:
            images: [B, 3, H, W] in [0, 1].
            step: 0-based optimisation step.
            out: this model's output for ``images`` if already computed (None: run the model).

        Returns:
            The scalar loss.

        Raises:
            TypeError: ``images`` is not a floating-point tensor (when ``out`` is None).
            ValueError: ``images`` is not [B, 3, R, R] in [0, 1] (when ``out`` is None).
        """
        out = self(images) if out is None else out
        loss = (out["recon"] - images).pow(2).mean()
        guidance = self.config.attention_guidance_steps
        if step < guidance:
            masks = self.attention_masks(out["attn"])
            guided = (out["rgb"] * masks.unsqueeze(2)).sum(dim=1)  # rgb is in [0, 1] like the images
            loss = loss + (1.0 - step / guidance) * (guided - images).pow(2).mean()
        return loss

    def forward(self, images: torch.Tensor, iters: Optional[int] = None,
                slots: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Returns recon, masks, rgb, slots, attn (attention of the slots over encoder positions).

        Args:
            images: [B, 3, H, W] in [0, 1].
            iters: slot-attention iterations for this call (default: the config's).
            slots: initial slots [B, num_slots, slot_dim] instead of sampling them (e.g. to compare with
                another implementation from the same start); see :meth:`SlotAttention.forward`.

        Returns:
            ``recon`` [B, 3, R, R], ``masks`` [B, K, R, R] and ``rgb`` [B, K, 3, R, R] as :meth:`decode`
            gives them, ``slots`` [B, K, slot_dim] and ``attn`` [B, K, N] (softmax over slots).

        Raises:
            TypeError: ``images`` is not a floating-point tensor.
            ValueError: ``images`` is not [B, 3, R, R] in [0, 1], or ``slots`` has the wrong shape.
        """
        feats = self.encode(images)
        slots, attn = self.slot_attention(feats, return_attn=True, iters=iters, slots=slots)
        out = self.decode(slots, attn)
        out["slots"], out["attn"] = slots, attn
        return out
