"""The object-discovery autoencoder of Slot Attention: CNN encoder, slot attention, broadcast decoder."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .slot_attention import SlotAttention
from ._replace import replace_fields

__all__ = ["AutoencoderConfig", "SlotAutoencoder", "CONFIGS", "config_for", "SoftPositionEmbedding"]


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of :class:`SlotAutoencoder`.

    Attributes:
        resolution: square image size (a power of two times ``broadcast``).
        channels: encoder / decoder channels.
        encoder_strides: stride of each 5x5 encoder conv (Slot Attention: all 1).
        broadcast: spatial size each slot is tiled to before the decoder (8 in Slot Attention).
        num_slots, slot_dim, iters, mlp_hidden, variant: passed to :class:`SlotAttention`.
        eval_iters: iterations at evaluation (None = ``iters``).
    """

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

    def replace(self, **changes) -> "AutoencoderConfig":
        """A copy with some fields changed (unknown names are an error)."""
        return replace_fields(self, "config", **changes)


# Named configurations: the paper's (Locatello et al.) at three sizes, and a light one for CPUs.
CONFIGS = {
    "paper-128": AutoencoderConfig(resolution=128),
    "paper-64": AutoencoderConfig(resolution=64),
    "paper-32": AutoencoderConfig(resolution=32),
    "cpu-small": AutoencoderConfig(resolution=32, channels=32, encoder_strides=(2, 1, 1, 1), num_slots=5,
                                   slot_dim=32, mlp_hidden=64),
}


def config_for(name: str, **changes) -> AutoencoderConfig:
    """Look up a named configuration and apply ``changes``."""
    if name not in CONFIGS:
        raise ValueError(f"unknown config {name!r}; choose one of {', '.join(CONFIGS)}")
    return CONFIGS[name].replace(**changes) if changes else CONFIGS[name]


class SoftPositionEmbedding(nn.Module):
    """Adds a linear map of the grid [x, y, 1 - x, 1 - y] to channel-last features [B, H, W, C]."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        axis = torch.linspace(0.0, 1.0, size)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        grid = torch.stack([xx, yy, 1.0 - xx, 1.0 - yy], dim=-1)
        self.register_buffer("grid", grid, persistent=False)
        self.proj = nn.Linear(4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(self.grid)


class SlotAutoencoder(nn.Module):
    """Encoder -> slot attention -> spatial broadcast decoder with per-slot RGB and alpha masks.

    Images are in [0, 1]; the model works in [-1, 1] internally as Slot Attention does, and returns
    reconstructions in [0, 1].

    Examples:
        >>> import torch
        >>> from deqslots.autoencoder import SlotAutoencoder, config_for
        >>> model = SlotAutoencoder(config_for("cpu-small", variant="IN"))
        >>> out = model(torch.rand(2, 3, 32, 32))
        >>> tuple(out["recon"].shape), tuple(out["masks"].shape), tuple(out["slots"].shape)
        ((2, 3, 32, 32), (2, 5, 32, 32), (2, 5, 32))
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = c = config
        layers: list[nn.Module] = []
        in_ch = 3
        for stride in c.encoder_strides:
            layers += [nn.Conv2d(in_ch, c.channels, 5, stride=stride, padding=2), nn.ReLU()]
            in_ch = c.channels
        self.encoder = nn.Sequential(*layers)
        feat = c.resolution // math.prod(c.encoder_strides)
        self.encoder_pos = SoftPositionEmbedding(c.channels, feat)
        self.encoder_norm = nn.LayerNorm(c.channels)
        self.encoder_mlp = nn.Sequential(nn.Linear(c.channels, c.channels), nn.ReLU(),
                                         nn.Linear(c.channels, c.channels))
        self.slot_attention = SlotAttention(c.channels, c.slot_dim, c.num_slots, c.iters, c.mlp_hidden,
                                            c.variant, eval_iters=c.eval_iters)
        self.decoder_pos = SoftPositionEmbedding(c.slot_dim, c.broadcast)
        ups = int(round(math.log2(c.resolution // c.broadcast)))
        dec: list[nn.Module] = []
        in_ch = c.slot_dim
        for _ in range(ups):
            dec += [nn.ConvTranspose2d(in_ch, c.channels, 5, stride=2, padding=2, output_padding=1), nn.ReLU()]
            in_ch = c.channels
        dec += [nn.ConvTranspose2d(in_ch, c.channels, 5, stride=1, padding=2), nn.ReLU(),
                nn.ConvTranspose2d(c.channels, 4, 3, stride=1, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [0, 1] -> input features [B, N, channels]."""
        c = self.config
        if images.dim() != 4 or images.shape[1:] != (3, c.resolution, c.resolution):
            raise ValueError(
                f"expected images [batch, 3, {c.resolution}, {c.resolution}] in [0, 1]; got {tuple(images.shape)}"
            )
        x = self.encoder(images * 2.0 - 1.0).permute(0, 2, 3, 1)  # channel-last
        x = self.encoder_pos(x).flatten(1, 2)
        return self.encoder_mlp(self.encoder_norm(x))

    def decode(self, slots: torch.Tensor) -> dict[str, torch.Tensor]:
        """Slots [B, K, D] -> reconstruction [B, 3, H, W] in [0, 1], masks [B, K, H, W], per-slot RGB."""
        batch, k, d = slots.shape
        size = self.config.broadcast
        x = slots.reshape(batch * k, 1, 1, d).expand(-1, size, size, -1)
        x = self.decoder_pos(x).permute(0, 3, 1, 2)
        out = self.decoder(x).reshape(batch, k, 4, self.config.resolution, self.config.resolution)
        rgb, alpha = out[:, :, :3], out[:, :, 3]
        masks = alpha.softmax(dim=1)
        recon = (rgb * masks.unsqueeze(2)).sum(dim=1)
        return {"recon": (recon + 1.0) / 2.0, "masks": masks, "rgb": (rgb + 1.0) / 2.0}

    def forward(self, images: torch.Tensor, iters: Optional[int] = None) -> dict[str, torch.Tensor]:
        """Returns recon, masks, rgb, slots, attn (attention of the slots over encoder positions)."""
        feats = self.encode(images)
        slots, attn = self.slot_attention(feats, return_attn=True, iters=iters)
        out = self.decode(slots)
        out["slots"], out["attn"] = slots, attn
        return out
