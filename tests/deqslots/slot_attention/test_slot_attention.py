"""Slot attention in the five variants: shapes, algorithm, where gradients flow, memory."""

import pytest
import torch

from deqslots import SlotAttention


def make(variant="vanilla", iters=3, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    model = SlotAttention(in_dim=12, slot_dim=8, num_slots=4, iters=iters, mlp_hidden=16, variant=variant, **kw)
    return model.to(dtype)


def inputs(batch=3, n=20, dtype=torch.float64):
    return torch.randn(batch, n, 12, dtype=dtype, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("variant", ["vanilla", "IN", "BN", "BB", "IB"])
def test_shapes_dtypes_and_attention_normalised(variant):
    sa = make(variant, dtype=torch.float32)
    slots, attn = sa(inputs(dtype=torch.float32), return_attn=True)
    assert slots.shape == (3, 4, 8) and attn.shape == (3, 4, 20)
    assert slots.dtype == torch.float32
    assert torch.allclose(attn.sum(dim=1), torch.ones(3, 20), atol=1e-5)  # softmax over slots


def test_step_matches_locatello_algorithm_by_hand():
    sa = make()
    x = sa.norm_inputs(inputs())
    k, v = sa.to_k(x), sa.to_v(x)
    slots = sa.initial_slots(3)
    q = sa.to_q(sa.norm_slots(slots)) / 8 ** 0.5
    attn = torch.einsum("bkd,bnd->bkn", q, k).softmax(dim=1) + 1e-8
    updates = torch.einsum("bkn,bnd->bkd", attn / attn.sum(-1, keepdim=True), v)
    gru = sa.gru(updates.reshape(-1, 8), slots.reshape(-1, 8)).reshape(3, 4, 8)
    expected = gru + sa.mlp(sa.norm_mlp(gru))
    assert torch.allclose(sa.step(slots, k, v), expected, atol=1e-12)


def test_vanilla_is_the_unrolled_loop_and_trains_the_initial_slots():
    sa = make("vanilla", iters=4)
    x = inputs()
    init = sa.initial_slots(3).detach()
    slots = sa(x, slots=init)
    h = init
    xn = sa.norm_inputs(x)
    k, v = sa.to_k(xn), sa.to_v(xn)
    for _ in range(4):
        h = sa.step(h, k, v)
    assert torch.allclose(slots, h, atol=1e-12)
    sa.zero_grad()
    sa(x).pow(2).sum().backward()
    assert sa.slots_mu.grad.abs().sum() > 0 and sa.slots_log_sigma.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["IN", "BN", "BB", "IB"])
def test_implicit_variants_give_no_gradient_to_initial_slots(variant):
    sa = make(variant)
    sa(inputs()).pow(2).sum().backward()
    assert sa.slots_mu.grad is None and sa.slots_log_sigma.grad is None
    assert sa.to_q.weight.grad.abs().sum() > 0 and sa.gru.weight_hh.grad.abs().sum() > 0


def test_IN_equals_hand_written_detach_plus_one_step():
    sa = make("IN", iters=5)
    x = inputs()
    init = sa.initial_slots(3).detach()
    c = torch.randn(3, 4, 8, dtype=torch.float64)
    (sa(x, slots=init) * c).sum().backward()
    got = {n: p.grad.clone() for n, p in sa.named_parameters() if p.grad is not None}
    sa.zero_grad()
    # the paper's one line of code, by hand
    xn = sa.norm_inputs(x)
    k, v = sa.to_k(xn), sa.to_v(xn)
    h = init
    with torch.no_grad():
        for _ in range(5):
            h = sa.step(h, k, v)
    h = sa.step(h.detach(), k, v)
    (h * c).sum().backward()
    ref = {n: p.grad for n, p in sa.named_parameters() if p.grad is not None}
    assert got.keys() == ref.keys()
    for name in ref:
        assert torch.allclose(got[name], ref[name], atol=1e-12), name


def test_eval_iters_and_per_call_iters():
    sa = make("IN", iters=3, eval_iters=9)
    x = inputs()
    _, info = sa(x, return_info=True)
    assert info.nfe == 3
    sa.eval()
    with torch.no_grad():
        _, info = sa(x, return_info=True)
        assert info.nfe == 9
        _, info = sa(x, iters=2, return_info=True)
        assert info.nfe == 2


def _saved_bytes(sa, x, iters):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    sa.iters = iters
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = sa(x)
    out.sum().backward()
    return total[0]


def test_saved_memory_flat_for_implicit_and_linear_for_vanilla():
    x = inputs(batch=4, n=64)
    for variant in ("IN", "BN"):
        sa = make(variant)
        sizes = [_saved_bytes(sa, x, t) for t in (1, 3, 7, 15)]
        assert len(set(sizes)) == 1, (variant, sizes)
    sa = make("vanilla")
    sizes = [_saved_bytes(sa, x, t) for t in (1, 3, 7, 15)]
    per_iter = sizes[1] - sizes[0]
    assert per_iter > 0
    # linear growth: equal increments per iteration
    increments = [(b - a) / (tb - ta) for (a, ta), (b, tb) in zip(zip(sizes, (1, 3, 7)), zip(sizes[1:], (3, 7, 15)))]
    assert max(increments) == pytest.approx(min(increments))


def test_bad_arguments():
    with pytest.raises(ValueError, match="variant must be one of vanilla, IN, BN, BB, IB"):
        SlotAttention(12, variant="NB")
    with pytest.raises(ValueError, match="num_slots must be a positive int"):
        SlotAttention(12, num_slots=0)
    sa = make()
    with pytest.raises(ValueError, match=r"expects inputs \[batch, n_inputs, 12\]"):
        sa(torch.randn(3, 12))
    with pytest.raises(ValueError, match="initial slots must be"):
        sa(inputs(), slots=torch.zeros(3, 5, 8, dtype=torch.float64))
