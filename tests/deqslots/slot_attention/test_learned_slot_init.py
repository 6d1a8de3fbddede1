"""Learned per-slot initialisation (BO-QSA): no noise, distinct slots, and where its gradient goes."""

from __future__ import annotations

import pytest
import torch

from deqslots import SlotAttention, SlotAutoencoder
from deqslots.slot_attention.config import config_for
from deqslots.cli import main


def make(variant: str, iters: int = 3) -> SlotAttention:
    torch.manual_seed(0)
    return SlotAttention(in_dim=12, slot_dim=8, num_slots=4, iters=iters, mlp_hidden=16, variant=variant,
                         init="learned").double()


def inputs() -> torch.Tensor:
    return torch.randn(3, 20, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


def test_initial_slots_are_the_learned_vectors_without_noise():
    sa = make("IN")
    assert not hasattr(sa, "slots_mu") and sa.slots_init.shape == (1, 4, 8)
    first, second = sa.initial_slots(3), sa.initial_slots(3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, second) and torch.equal(first[1], sa.slots_init[0])
    assert torch.cdist(sa.slots_init[0], sa.slots_init[0]).triu(1).max() > 0.1  # slots start apart
    sa.train()
    assert torch.equal(sa(inputs()), sa(inputs()))  # deterministic in training too: nothing is sampled


def test_vanilla_trains_the_init_through_the_unrolled_iterations():
    sa = make("vanilla", iters=2)
    x = inputs()
    sa(x).pow(2).sum().backward()
    got = sa.slots_init.grad.clone()
    sa.zero_grad()
    xn = sa.norm_inputs(x)
    k, v = sa.to_k(xn), sa.to_v(xn)
    h = sa.step(sa.step(sa.slots_init.expand(3, -1, -1), k, v), k, v)
    h.pow(2).sum().backward()
    assert torch.allclose(got, sa.slots_init.grad, atol=1e-12)


@pytest.mark.parametrize("variant", ["IN", "BN", "BB", "IB"])
def test_implicit_variants_pass_the_fixed_points_gradient_straight_to_the_init(variant):
    sa = make(variant)
    c = torch.randn(3, 4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    slots = sa(inputs())
    (slots * c).sum().backward()
    # straight-through: d loss / d init = d loss / d slots*, summed over the batch
    assert torch.allclose(sa.slots_init.grad[0], c.sum(dim=0), atol=1e-12)
    # the value is the fixed point itself: the same as solving from the init by hand
    assert torch.allclose(slots, sa(inputs(), slots=sa.slots_init.expand(3, -1, -1).detach()), atol=1e-12)
    assert sa.to_q.weight.grad.abs().sum() > 0


def test_given_initial_slots_get_no_straight_through():
    sa = make("IN")
    start = sa.slots_init.detach().expand(3, -1, -1).clone().requires_grad_(True)
    sa(inputs(), slots=start).sum().backward()
    assert start.grad is None and sa.slots_init.grad is None


def test_autoencoder_config_and_bad_input():
    model = SlotAutoencoder(config_for("cpu-objects", slot_init="learned"))
    assert model.slot_attention.init == "learned"
    with pytest.raises(ValueError, match="slot_init must be one of gaussian, learned"):
        config_for("cpu-objects", slot_init="queries")
    with pytest.raises(ValueError, match="init must be one of"):
        SlotAttention(4, 4, 2, init="fixed")


def test_eval_refuses_more_slots_than_the_learned_ones(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", "cpu-objects", "--set", "slot_init=learned", "--data", "same-hue",
                 "--steps", "2", "--batch-size", "4", "--eval-every", "2", "--eval-batches", "1", "--threads", "1",
                 "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--batches", "1", "--num-slots", "10"]) == 2
    assert "learned initial slots" in capsys.readouterr().err
    assert main(["eval", str(run), "--batches", "1"]) == 0
