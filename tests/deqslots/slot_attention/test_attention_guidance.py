"""Attention guidance: the decoder-mask autoencoder's loss during its first steps."""

from __future__ import annotations

import pytest
import torch

from deqslots.slot_attention.autoencoder import SlotAutoencoder
from deqslots.slot_attention.config import config_for
from deqslots.data import generate_batch


def _model(steps: int) -> SlotAutoencoder:
    torch.manual_seed(0)
    return SlotAutoencoder(config_for("cpu-small", mask_source="decoder", attention_guidance_steps=steps))


def test_loss_adds_the_attention_mixed_reconstruction_with_a_linearly_falling_weight():
    model = _model(100)
    images, _ = generate_batch("same-hue", 4, resolution=32)
    torch.manual_seed(1)
    out = model(images)
    mse = float((out["recon"] - images).pow(2).mean())
    masks = torch.nn.functional.interpolate(out["attn"].reshape(4, 7, 32, 32), size=(32, 32), mode="bilinear")
    guided = float(((out["rgb"] * masks.unsqueeze(2)).sum(1) - images).pow(2).mean())
    for step, weight in ((0, 1.0), (25, 0.75), (99, 0.01), (100, 0.0), (5000, 0.0)):
        assert float(model.loss(images, step, out=out)) == pytest.approx(mse + weight * guided, rel=1e-6)


def test_guidance_reaches_the_attention_and_off_means_plain_mse():
    images, _ = generate_batch("shapes", 4, resolution=32)
    for steps, expect_grad in ((10, True), (0, False)):
        model = _model(steps)
        out = model(images)
        # the decoder's masks alone: a loss with no path through the attention but the slots
        loss = model.loss(images, 0, out=out) - (out["recon"] - images).pow(2).mean()
        if expect_grad:
            loss.backward()
            assert model.slot_attention.to_q.weight.grad.abs().sum() > 0
        else:
            assert float(loss) == 0.0


@pytest.mark.parametrize("changes, match", [
    (dict(attention_guidance_steps=-1), "attention_guidance_steps must be an int >= 0"),
    (dict(attention_guidance_steps=1.5), "attention_guidance_steps must be an int >= 0"),
    (dict(attention_guidance_steps=10, mask_source="attention"), "needs mask_source='decoder'"),
])
def test_bad_guidance(changes, match):
    with pytest.raises(ValueError, match=match):
        config_for("cpu-small", **{"mask_source": "decoder", **changes})


def test_fourier_position_features_of_the_decoder():
    from deqslots.slot_attention.autoencoder import SoftPositionEmbedding

    linear, fourier = SoftPositionEmbedding(8, 16), SoftPositionEmbedding(8, 16, frequencies=3)
    assert linear.grid.shape == (16, 16, 4) and fourier.grid.shape == (16, 16, 16)
    torch.testing.assert_close(fourier.grid[..., :4], linear.grid)
    x = fourier.grid[0, :, 0]  # x along the first row
    torch.testing.assert_close(fourier.grid[0, :, 4 + 2 * 4], torch.sin(4.0 * torch.pi * x))  # f = 2, sin x
    model = SlotAutoencoder(config_for("cpu-objects", decoder_position_frequencies=2))
    assert model.decoder_pos.proj.in_features == 12
    assert model(torch.rand(2, 3, 32, 32))["masks"].shape == (2, 7, 32, 32)
    with pytest.raises(ValueError, match="decoder_position_frequencies"):
        config_for("cpu-objects", decoder_position_frequencies=9)
