"""SLATE: the decoder is causal, cached generation equals uncached, the dVAE gets no gradient from the
transformer, the temperature schedule hits its endpoints, shapes and errors."""


import pytest
import torch

from deqslots import SLATE, SLATEConfig, slate_config_for
from deqslots.training.schedule import cosine_anneal
from deqslots.slate import ImageGPTDecoder, TokenEmbedding, generate_tokens, gumbel_softmax
from deqslots.training.config import TrainConfig


def tiny(variant="IN", **kw):
    base = dict(resolution=16, vocab_size=12, dvae_channels=8, d_model=16, num_blocks=2, num_heads=2, num_slots=3,
                slot_dim=16, mlp_hidden=16, variant=variant)
    base.update(kw)
    torch.manual_seed(0)
    return SLATE(SLATEConfig(**base))


def images(batch=3, res=16, seed=1):
    return torch.rand(batch, 3, res, res, generator=torch.Generator().manual_seed(seed))


def teacher_forced_logits(model, tokens, memory):
    seq = model.embedding.sequence(tokens)
    return model.head(model.decoder(seq[:, :-1], memory))


def test_changing_future_tokens_leaves_earlier_logits_unchanged():
    model = tiny().eval()
    tokens = torch.randint(0, 12, (2, 16), generator=torch.Generator().manual_seed(0))
    memory = model.slot_proj(torch.randn(2, 3, 16))  # slots held fixed: the decoder alone is causal
    before = teacher_forced_logits(model, tokens, memory)
    for j in (0, 5, 15):
        changed = tokens.clone()
        changed[:, j:] = (changed[:, j:] + 1 + torch.arange(16 - j)) % 12
        after = teacher_forced_logits(model, changed, memory)
        # logits at position i predict token i from tokens < i: positions <= j cannot see the change
        assert torch.allclose(before[:, : j + 1], after[:, : j + 1], atol=1e-6)
        if j < 15:
            assert not torch.allclose(before[:, j + 1:], after[:, j + 1:], atol=1e-4)


def test_decoder_causality_holds_in_training_mode_too():
    torch.manual_seed(0)
    dec = ImageGPTDecoder(d_model=16, num_blocks=2, num_heads=4, dropout=0.0).train()
    x, memory = torch.randn(2, 10, 16), torch.randn(2, 3, 16)
    y = x.clone()
    y[:, 6:] += 1.0
    assert torch.allclose(dec(x, memory)[:, :6], dec(y, memory)[:, :6], atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 3])
def test_cache_matches_full_sequence(chunk):
    torch.manual_seed(0)
    dec = ImageGPTDecoder(d_model=16, num_blocks=3, num_heads=2).eval()
    x, memory = torch.randn(2, 12, 16), torch.randn(2, 5, 16)
    cache = dec.new_cache()
    pieces = [dec(x[:, i:i + chunk], memory, cache) for i in range(0, 12, chunk)]
    assert cache.length == 12
    assert torch.allclose(torch.cat(pieces, dim=1), dec(x, memory), atol=1e-5)


def test_cached_generation_equals_uncached():
    model = tiny(resolution=32).eval()
    memory = model.slot_proj(torch.randn(4, 3, 16))
    cached = generate_tokens(model.embedding, model.decoder, model.head, memory, 64, use_cache=True)
    uncached = generate_tokens(model.embedding, model.decoder, model.head, memory, 64, use_cache=False)
    assert torch.equal(cached[0], uncached[0])
    assert torch.allclose(cached[1], uncached[1], atol=1e-5)
    # the generated sequence is the greedy one: teacher forcing on it reproduces the same logits
    assert torch.allclose(teacher_forced_logits(model, cached[0], memory), cached[1], atol=1e-5)
    assert torch.equal(teacher_forced_logits(model, cached[0], memory).argmax(-1), cached[0])


def test_reconstruct_with_and_without_cache_and_outputs():
    model = tiny()
    model.train()
    x = images()
    torch.manual_seed(3)
    a = model.reconstruct(x)
    torch.manual_seed(3)
    b = model.reconstruct(x, use_cache=False)
    assert model.training  # mode restored
    assert torch.equal(a["generated"], b["generated"]) and torch.allclose(a["recon"], b["recon"])
    assert a["recon"].shape == (3, 3, 16, 16) and a["recon_dvae"].shape == (3, 3, 16, 16)
    assert 0 <= float(a["recon"].min()) and float(a["recon"].max()) <= 1
    assert a["tokens"].shape == a["generated"].shape == (3, 16) and a["attn"].shape == (3, 3, 16)
    assert torch.allclose(a["masks"].sum(dim=1), torch.ones(3, 16, 16), atol=1e-5)


def test_no_dvae_gradient_from_the_cross_entropy():
    model = tiny().train()
    losses = model(images(), tau=0.5)
    losses["ce"].backward()
    assert all(p.grad is None or not p.grad.any() for p in model.dvae.parameters())
    for module in (model.decoder, model.head, model.slot_proj, model.slot_attention.gru, model.embedding):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    model.zero_grad()
    model(images(), tau=0.5)["dvae_mse"].backward()
    assert all(p.grad is not None for p in model.dvae.parameters())
    assert all(p.grad is None for p in model.decoder.parameters())


def test_losses_follow_slates_conventions():
    model = tiny().eval()
    x = images()
    torch.manual_seed(5)  # the same initial-slot noise for both paths
    losses = model(x)
    _, tokens = model.tokenize(x)
    torch.manual_seed(5)
    _, slots, _ = model.encode_slots(tokens)
    logits = teacher_forced_logits(model, tokens, model.slot_proj(slots))
    per_token = torch.nn.functional.cross_entropy(logits.reshape(-1, 12), tokens.reshape(-1), reduction="none")
    assert torch.allclose(losses["ce"], per_token.reshape(3, 16).sum(1).mean(), rtol=1e-5)  # sum tokens, mean batch
    assert torch.allclose(losses["ce_per_token"], per_token.mean(), rtol=1e-5)
    recon = model.dvae.decode_tokens(tokens, 4)
    assert torch.allclose(losses["dvae_mse"], (recon - x).pow(2).sum((1, 2, 3)).mean(), rtol=1e-5)
    assert torch.allclose(losses["loss"], losses["ce"] + losses["dvae_mse"])


@pytest.mark.parametrize("variant,learned", [("vanilla", True), ("IN", False)])
def test_initial_slot_parameters_get_gradient_only_under_vanilla(variant, learned):
    model = tiny(variant).train()
    model(images(), tau=1.0)["loss"].backward()
    grad = model.slot_attention.slots_mu.grad
    assert (grad is not None and grad.abs().sum() > 0) == learned


def test_temperature_schedule_endpoints():
    assert cosine_anneal(0, 1.0, 0.1, 30_000) == 1.0
    assert cosine_anneal(30_000, 1.0, 0.1, 30_000) == pytest.approx(0.1)
    assert cosine_anneal(10 ** 6, 1.0, 0.1, 30_000) == pytest.approx(0.1)
    values = [cosine_anneal(s, 1.0, 0.1, 100) for s in range(101)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert cosine_anneal(7, 0.5, 0.1, 0) == 0.5  # switched off
    config = TrainConfig(model="slate", steps=1000)
    assert config.tau(0) == 1.0 and config.tau(config.tau_anneal) == pytest.approx(0.1) and config.tau_anneal == 500
    assert TrainConfig(model="slate", tau_steps=0, tau_start=0.7).tau(999) == 0.7
    with pytest.raises(ValueError, match="annealing steps must be >= 0"):
        cosine_anneal(0, steps=-1)


def test_gumbel_softmax_samples_the_categorical():
    log_probs = torch.tensor([0.6, 0.3, 0.1]).log().reshape(1, 3, 1, 1).expand(20_000, 3, 1, 1)
    sample = gumbel_softmax(log_probs, tau=0.5, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(sample.argmax(dim=1).flatten(), minlength=3).float() / 20_000
    assert torch.allclose(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.015)
    assert torch.allclose(sample.sum(dim=1), torch.ones(20_000, 1, 1))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        gumbel_softmax(log_probs, tau=0.0)


def test_parameter_groups_split_dvae_from_the_rest():
    model = tiny()
    groups = model.parameter_groups()
    assert {id(p) for p in groups["dvae"]} == {id(p) for p in model.dvae.parameters()}
    assert len(groups["dvae"]) + len(groups["main"]) == len(list(model.parameters()))


def test_named_configs_and_bad_input():
    assert slate_config_for("paper-64").num_tokens == 256 and slate_config_for("paper-64").vocab_size == 1024
    assert slate_config_for("paper-96").resolution == 96
    small = slate_config_for("cpu-small")
    assert (small.resolution, small.num_tokens, small.num_blocks) == (64, 256, 2)
    with pytest.raises(ValueError, match="unknown SLATE config 'paper-32'"):
        slate_config_for("paper-32")
    with pytest.raises(ValueError, match="multiple of 4"):
        SLATEConfig(resolution=30)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        SLATEConfig(d_model=10, num_heads=4)
    with pytest.raises(ValueError, match="variant must be one of"):
        SLATEConfig(variant="XX")
    with pytest.raises(TypeError, match="unknown SLATE config field"):
        SLATEConfig().replace(vocab=3)
    with pytest.raises(ValueError, match=r"expects images \[batch, 3, 16, 16\]"):
        tiny()(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="at most 16 tokens"):
        model = tiny().eval()
        generate_tokens(model.embedding, model.decoder, model.head, torch.randn(1, 3, 16), 17)


def test_decoder_rejects_an_unknown_activation_or_first_block_norm():
    # any first_block_norm other than "replace" behaved as "pre"; an unknown activation was a bare KeyError
    with pytest.raises(ValueError, match=r"ImageGPTDecoder first_block_norm must be one of replace, pre; got 'post'"):
        ImageGPTDecoder(d_model=16, num_blocks=2, num_heads=2, first_block_norm="post")
    with pytest.raises(ValueError, match=r"ImageGPTDecoder activation must be one of relu, gelu; got 'tanh'"):
        ImageGPTDecoder(d_model=16, num_blocks=2, num_heads=2, activation="tanh")


def test_eval_iters_refuses_a_bool():
    # True is an int: it passed as eval_iters=1
    with pytest.raises(ValueError, match=r"SLATE eval_iters must be a positive int or None; got True"):
        SLATEConfig(eval_iters=True)
    assert SLATEConfig(eval_iters=2).eval_iters == 2


@pytest.mark.parametrize("method", ["tokenize", "encode_images"])
def test_tokenize_and_encode_images_check_their_images(method):
    # they took any tensor unchecked, unlike forward and reconstruct
    model = tiny().eval()
    with pytest.raises(ValueError, match=r"SLATE expects images \[batch, 3, 16, 16\]"):
        getattr(model, method)(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        getattr(model, method)(255 * images())
    with pytest.raises(TypeError, match="floating"):
        getattr(model, method)((255 * images()).to(torch.uint8))


def test_embedding_positions_line_up():
    emb = TokenEmbedding(vocab_size=5, d_model=4, num_tokens=3, dropout=0.0)
    tokens = torch.tensor([[1, 2, 3]])
    seq = emb.sequence(tokens)
    assert torch.allclose(seq[:, 0:1], emb.at(torch.tensor([5]), 0))  # BOS at position 0
    for j in range(3):
        assert torch.allclose(seq[:, j + 1:j + 2], emb.at(tokens[:, j], j + 1))

