"""SLATE as its authors' code computes it: the paper configuration against a transcription of singhgautam/slate.

The transcription below is written from the authors' PyTorch code (singhgautam/slate: dvae.py, utils.py,
transformer.py, slot_attn.py, slate.py; each line cites its source as file:line), as functions of a dict of
weights under THEIR state-dict names. Our model's weights are copied in through an explicit name table, and
every piece is compared in float64 to 1e-6 relative: dVAE logits and decoder, token + position embedding,
slot-attention inputs, slots from the same initial slots, masks, decoder logits, generation, loss and every
gradient. A second test draws fresh models and compares each tensor's spread with the authors' initialisers.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from deqslots import SLATE
from deqslots.slate import SLATEConfig, slate_config_for

NUM_SLOTS = 4
ENCODER_BLOCKS = 6  # dvae.py:10-15: six Conv2dBlock(64, 64, 1, 1) after the 4x4 / 4 one


def _config(**changes) -> SLATEConfig:
    # The paper configuration with a 4x4 token grid and 4 slots, so that float64 runs in seconds; dropout 0
    # so that the training-mode passes (Gumbel samples) compare exactly.
    return slate_config_for("paper-64", resolution=16, num_slots=NUM_SLOTS, **changes)


def _name_table(c: SLATEConfig) -> list[tuple[str, str]]:
    """(their state-dict name, ours), every trained tensor of SLATE."""
    table = []
    for i in range(1 + ENCODER_BLOCKS):  # dvae.py:9-15 Conv2dBlock (utils.py:61-75: .m conv, GN affine)
        table += [(f"dvae.encoder.{i}.m.weight", f"dvae.encoder.{i}.0.weight"),
                  (f"dvae.encoder.{i}.weight", f"dvae.encoder.{i}.1.weight"),
                  (f"dvae.encoder.{i}.bias", f"dvae.encoder.{i}.1.bias")]
    last = 1 + ENCODER_BLOCKS  # dvae.py:16 conv2d(64, vocab, 1)
    table += [(f"dvae.encoder.{last}.weight", f"dvae.encoder.{last}.weight"),
              (f"dvae.encoder.{last}.bias", f"dvae.encoder.{last}.bias")]
    for i in (0, 1, 2, 3, 4, 6, 7, 8, 9):  # dvae.py:20-29 (5 and 10 are PixelShuffle)
        table += [(f"dvae.decoder.{i}.m.weight", f"dvae.decoder.{i}.0.weight"),
                  (f"dvae.decoder.{i}.weight", f"dvae.decoder.{i}.1.weight"),
                  (f"dvae.decoder.{i}.bias", f"dvae.decoder.{i}.1.bias")]
    table += [("dvae.decoder.11.weight", "dvae.decoder.11.weight"), ("dvae.decoder.11.bias", "dvae.decoder.11.bias"),
              # their dictionary row 0 is BOS and token t is row t + 1 (slate.py:55-57); ours keeps BOS last
              ("dictionary.dictionary.weight", "embedding.dictionary.weight"),
              ("positional_encoder.pe", "embedding.position"),
              ("slot_attn.layer_norm.weight", "slot_input.0.weight"),
              ("slot_attn.layer_norm.bias", "slot_input.0.bias"),
              ("slot_attn.mlp.0.weight", "slot_input.1.weight"), ("slot_attn.mlp.0.bias", "slot_input.1.bias"),
              ("slot_attn.mlp.2.weight", "slot_input.3.weight"), ("slot_attn.mlp.2.bias", "slot_input.3.bias"),
              ("slot_attn.slot_mu", "slot_attention.slots_mu"),
              ("slot_attn.slot_log_sigma", "slot_attention.slots_log_sigma")]
    sa, ours = "slot_attn.slot_attention", "slot_attention"
    for theirs, mine in (("norm_inputs", "norm_inputs"), ("norm_slots", "norm_slots"), ("norm_mlp", "norm_mlp"),
                         ("mlp.0", "mlp.0"), ("mlp.2", "mlp.2")):
        table += [(f"{sa}.{theirs}.weight", f"{ours}.{mine}.weight"), (f"{sa}.{theirs}.bias", f"{ours}.{mine}.bias")]
    table += [(f"{sa}.project_{x}.weight", f"{ours}.to_{x}.weight") for x in "qkv"]
    table += [(f"{sa}.gru.{x}", f"{ours}.gru.{x}") for x in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    table += [("slot_proj.weight", "slot_proj.weight"), ("out.weight", "head.weight"),
              ("tf_dec.layer_norm.weight", "decoder.norm.weight"), ("tf_dec.layer_norm.bias", "decoder.norm.bias")]
    for b in range(c.num_blocks):
        t, o = f"tf_dec.blocks.{b}", f"decoder.blocks.{b}"
        for theirs, mine in (("self_attn_layer_norm", "norm_self"), ("encoder_decoder_attn_layer_norm", "norm_cross"),
                             ("ffn_layer_norm", "norm_mlp"), ("ffn.0", "mlp.0"), ("ffn.2", "mlp.2")):
            table += [(f"{t}.{theirs}.weight", f"{o}.{mine}.weight"), (f"{t}.{theirs}.bias", f"{o}.{mine}.bias")]
        for theirs, mine in (("self_attn", "self_attn"), ("encoder_decoder_attn", "cross_attn")):
            table += [(f"{t}.{theirs}.proj_{x}.weight", f"{o}.{mine}.to_{x}.weight") for x in "qkv"]
            table += [(f"{t}.{theirs}.proj_o.weight", f"{o}.{mine}.out.weight")]
    return table


def _bos_first(dictionary: torch.Tensor) -> torch.Tensor:
    """Our dictionary rows (tokens 0..V-1, then BOS) in their order (BOS, then tokens)."""
    return torch.cat([dictionary[-1:], dictionary[:-1]])


def _their_weights(model: SLATE) -> dict[str, torch.Tensor]:
    ours = dict(model.named_parameters())
    weights = {}
    for theirs, mine in _name_table(model.config):
        value = ours[mine].detach().clone()
        weights[theirs] = _bos_first(value) if theirs == "dictionary.dictionary.weight" else value
    return weights


# ---- the transcription (singhgautam/slate) ----------------------------------------------------------------------

def _conv_block(w, name, x, stride=1, padding=0):
    x = F.conv2d(x, w[f"{name}.m.weight"], None, stride, padding)  # utils.py:74
    return F.relu(F.group_norm(x, 1, w[f"{name}.weight"], w[f"{name}.bias"]))  # utils.py:75


def dvae_encoder(w, image):
    x = _conv_block(w, "dvae.encoder.0", image, stride=4)  # dvae.py:9 Conv2dBlock(img_channels, 64, 4, 4)
    for i in range(1, 1 + ENCODER_BLOCKS):
        x = _conv_block(w, f"dvae.encoder.{i}", x)  # dvae.py:10-15 Conv2dBlock(64, 64, 1, 1)
    return F.conv2d(x, w["dvae.encoder.7.weight"], w["dvae.encoder.7.bias"])  # dvae.py:16


def dvae_decoder(w, z):
    x = _conv_block(w, "dvae.decoder.0", z)  # dvae.py:20
    for first in (1, 6):
        x = _conv_block(w, f"dvae.decoder.{first}", x, padding=1)  # dvae.py:21, 26 (3x3, padding 1)
        x = _conv_block(w, f"dvae.decoder.{first + 1}", x)  # dvae.py:22, 27
        x = _conv_block(w, f"dvae.decoder.{first + 2}", x)  # dvae.py:23, 28
        x = _conv_block(w, f"dvae.decoder.{first + 3}", x)  # dvae.py:24, 29 (to 64 * 2 * 2)
        x = F.pixel_shuffle(x, 2)  # dvae.py:25, 30
    return F.conv2d(x, w["dvae.decoder.11.weight"], w["dvae.decoder.11.bias"])  # dvae.py:31


def gumbel_softmax(logits, tau, hard, dim, exponential):
    # utils.py:17-31, with the Exponential(1) draw passed in (utils.py:21 draws it with exponential_())
    eps = torch.finfo(logits.dtype).tiny
    gumbels = -(exponential + eps).log()  # utils.py:21
    y_soft = F.softmax((logits + gumbels) / tau, dim)  # utils.py:22-24
    if hard:
        index = y_soft.argmax(dim, keepdim=True)  # utils.py:27
        y_hard = torch.zeros_like(logits).scatter_(dim, index, 1.0)  # utils.py:28
        return y_hard - y_soft.detach() + y_soft  # utils.py:29
    return y_soft


def with_bos(one_hot_tokens):
    x = torch.cat([torch.zeros_like(one_hot_tokens[..., :1]), one_hot_tokens], dim=-1)  # slate.py:55
    x = torch.cat([torch.zeros_like(x[..., :1, :]), x], dim=-2)  # slate.py:56
    x[:, 0, 0] = 1.0  # slate.py:57
    return x


def embed(w, one_hot_with_bos):
    tokens = torch.argmax(one_hot_with_bos, dim=-1)  # slate.py OneHotDictionary.forward
    x = F.embedding(tokens, w["dictionary.dictionary.weight"])
    return x + w["positional_encoder.pe"][:, :x.shape[1]]  # transformer.py:64-65 (dropout off)


def _linear(w, name, x, bias=True):
    return F.linear(x, w[f"{name}.weight"], w[f"{name}.bias"] if bias else None)


def _layer_norm(w, name, x):
    return F.layer_norm(x, x.shape[-1:], w[f"{name}.weight"], w[f"{name}.bias"])  # nn.LayerNorm, eps 1e-5


def slot_inputs(w, x):
    return _linear(w, "slot_attn.mlp.2", F.relu(_linear(w, "slot_attn.mlp.0",
                                                        _layer_norm(w, "slot_attn.layer_norm", x))))  # slot_attn.py:107


def slot_attention(w, inputs, slots, iterations, eps=1e-8):
    """slot_attn.py:34-71 with one head: returns (slots, attn_vis [B, N, K] of the last iteration)."""
    sa = "slot_attn.slot_attention"
    size = slots.shape[-1]
    inputs = _layer_norm(w, f"{sa}.norm_inputs", inputs)  # slot_attn.py:41
    k = _linear(w, f"{sa}.project_k", inputs, bias=False)  # slot_attn.py:42
    v = _linear(w, f"{sa}.project_v", inputs, bias=False)  # slot_attn.py:43
    k = size ** -0.5 * k  # slot_attn.py:44
    attn_vis = None
    for _ in range(iterations):  # slot_attn.py:47
        slots_prev = slots  # slot_attn.py:48
        slots = _layer_norm(w, f"{sa}.norm_slots", slots)  # slot_attn.py:49
        q = _linear(w, f"{sa}.project_q", slots, bias=False)  # slot_attn.py:52
        attn = F.softmax(k @ q.transpose(-1, -2), dim=-1)  # slot_attn.py:53-56: softmax over slots
        attn_vis = attn  # slot_attn.py:57 (the sum over one head)
        attn = attn + eps  # slot_attn.py:60
        attn = attn / attn.sum(dim=-2, keepdim=True)  # slot_attn.py:61
        updates = attn.transpose(-1, -2) @ v  # slot_attn.py:62
        b, n_slots = slots.shape[:2]
        slots = torch._VF.gru_cell(updates.reshape(-1, size), slots_prev.reshape(-1, size),  # slot_attn.py:66-67
                                   w[f"{sa}.gru.weight_ih"], w[f"{sa}.gru.weight_hh"], w[f"{sa}.gru.bias_ih"],
                                   w[f"{sa}.gru.bias_hh"]).reshape(b, n_slots, size)  # slot_attn.py:68
        mlp = _linear(w, f"{sa}.mlp.2", F.relu(_linear(w, f"{sa}.mlp.0", _layer_norm(w, f"{sa}.norm_mlp", slots))))
        slots = slots + mlp  # slot_attn.py:69
    return slots, attn_vis  # slot_attn.py:71


def _attention(w, name, q, k, v, heads, mask=None):
    """transformer.py:21-48 (dropout off)."""
    (b, t, _), s = q.shape, k.shape[1]
    q = _linear(w, f"{name}.proj_q", q, False).view(b, t, heads, -1).transpose(1, 2)  # transformer.py:32
    k = _linear(w, f"{name}.proj_k", k, False).view(b, s, heads, -1).transpose(1, 2)  # transformer.py:33
    v = _linear(w, f"{name}.proj_v", v, False).view(b, s, heads, -1).transpose(1, 2)  # transformer.py:34
    q = q * (q.shape[-1] ** (-0.5))  # transformer.py:36
    attn = q @ k.transpose(-1, -2)  # transformer.py:37
    if mask is not None:
        attn = attn.masked_fill(mask, float("-inf"))  # transformer.py:39-40
    attn = F.softmax(attn, dim=-1)  # transformer.py:42
    out = (attn @ v).transpose(1, 2).reshape(b, t, -1)  # transformer.py:45
    return _linear(w, f"{name}.proj_o", out, False)  # transformer.py:46


def transformer_decoder(w, x, memory, blocks, heads):
    t = x.shape[1]
    mask = torch.triu(torch.ones((t, t), dtype=torch.bool), diagonal=1)  # transformer.py:142, 166
    for b in range(blocks):  # transformer.py:207-208
        name = f"tf_dec.blocks.{b}"
        if b == 0:  # is_first (transformer.py:164-167; transformer.py:190)
            x = _layer_norm(w, f"{name}.self_attn_layer_norm", x)
            x = x + _attention(w, f"{name}.self_attn", x, x, x, heads, mask)
        else:  # transformer.py:168-171
            h = _layer_norm(w, f"{name}.self_attn_layer_norm", x)
            x = x + _attention(w, f"{name}.self_attn", h, h, h, heads, mask)
        h = _layer_norm(w, f"{name}.encoder_decoder_attn_layer_norm", x)  # transformer.py:173
        x = x + _attention(w, f"{name}.encoder_decoder_attn", h, memory, memory, heads)  # transformer.py:174-175
        h = _layer_norm(w, f"{name}.ffn_layer_norm", x)  # transformer.py:177
        x = x + _linear(w, f"{name}.ffn.2", F.relu(_linear(w, f"{name}.ffn.0", h)))  # transformer.py:150-153, 178-179
    return _layer_norm(w, "tf_dec.layer_norm", x)  # transformer.py:210


def slate_forward(w, c, image, tau, noise):
    """slate.py:32-80 (SLATE.forward, hard=False): returns its pieces. ``noise``: the two Exponential(1) draws of
    the Gumbel samples and the Gaussian draw of the initial slots."""
    b, _, h, _ = image.shape
    z_logits = F.log_softmax(dvae_encoder(w, image), dim=1)  # slate.py:40
    z = gumbel_softmax(z_logits, tau, False, 1, noise["exp1"])  # slate.py:42
    recon = dvae_decoder(w, z)  # slate.py:45
    mse = ((image - recon) ** 2).sum() / b  # slate.py:46
    z_hard = gumbel_softmax(z_logits, tau, True, 1, noise["exp2"]).detach()  # slate.py:49
    target = z_hard.permute(0, 2, 3, 1).flatten(start_dim=1, end_dim=2)  # slate.py:52
    emb_input = embed(w, with_bos(target))  # slate.py:55-61
    x = slot_inputs(w, emb_input[:, 1:])  # slate.py:64 -> slot_attn.py:107
    slots0 = w["slot_attn.slot_mu"] + torch.exp(w["slot_attn.slot_log_sigma"]) * noise["slots"]  # slot_attn.py:111-112
    slots, attns = slot_attention(w, x, slots0, c.iters)  # slot_attn.py:113
    memory = _linear(w, "slot_proj", slots, bias=False)  # slate.py:70
    pred = _linear(w, "out", transformer_decoder(w, emb_input[:, :-1], memory, c.num_blocks, c.num_heads), False)
    cross_entropy = -(target * torch.log_softmax(pred, dim=-1)).flatten(start_dim=1).sum(-1).mean()  # slate.py:73
    masks = attns.transpose(-1, -2).reshape(b, c.num_slots, 1, c.grid, c.grid)  # slate.py:65-66
    masks = masks.repeat_interleave(h // c.grid, dim=-2).repeat_interleave(h // c.grid, dim=-1)
    return dict(z=z, recon=recon, mse=mse, tokens=target.argmax(-1), slots=slots, masks=masks[:, :, 0],
                pred=pred, cross_entropy=cross_entropy, loss=mse + cross_entropy)  # train.py: loss = mse + ce


def reconstruct_autoregressive(w, c, image, noise_slots):
    """slate.py:82-133 (eval: argmax tokens, greedy generation re-running the decoder on the whole prefix)."""
    b = image.shape[0]
    z_logits = F.log_softmax(dvae_encoder(w, image), dim=1)  # slate.py:92
    z_hard = F.one_hot(torch.argmax(z_logits, dim=1), c.vocab_size).permute(0, 3, 1, 2).double()  # slate.py:96-97
    one_hot_tokens = z_hard.permute(0, 2, 3, 1).flatten(start_dim=1, end_dim=2)  # slate.py:98
    emb_input = embed(w, with_bos(one_hot_tokens))  # slate.py:101-107
    slots0 = w["slot_attn.slot_mu"] + torch.exp(w["slot_attn.slot_log_sigma"]) * noise_slots
    slots, _ = slot_attention(w, slot_inputs(w, emb_input[:, 1:]), slots0, c.iters)  # slate.py:110
    memory = _linear(w, "slot_proj", slots, bias=False)  # slate.py:114
    z_gen = []
    z_input = torch.zeros(b, 1, c.vocab_size + 1, dtype=torch.float64)  # slate.py:118
    z_input[..., 0] = 1.0  # slate.py:119
    for _ in range(c.num_tokens):  # slate.py:120
        hidden = transformer_decoder(w, embed(w, z_input), memory, c.num_blocks, c.num_heads)  # slate.py:121-124
        z_next = F.one_hot(_linear(w, "out", hidden, False)[:, -1:].argmax(dim=-1), c.vocab_size)  # slate.py:125
        z_gen.append(z_next)  # slate.py:126
        z_input = torch.cat([z_input, torch.cat([torch.zeros_like(z_next[:, :, :1]), z_next], -1).double()], dim=1)
    z_gen = torch.cat(z_gen, dim=1).transpose(1, 2).double().reshape(b, -1, c.grid, c.grid)  # slate.py:130
    return dvae_decoder(w, z_gen).clamp(0.0, 1.0), z_gen.argmax(1).flatten(1)  # slate.py:131-136


# ---- the comparisons --------------------------------------------------------------------------------------------

def _close(ours: torch.Tensor, theirs: torch.Tensor, what: str, rtol: float = 1e-6, floor: float = 1e-30) -> None:
    """Largest difference within ``rtol`` of the largest entry of ``theirs`` (or of ``floor`` if that is smaller:
    a tensor that is zero up to rounding in both, e.g. a gradient the softmax over slots cancels)."""
    scale = theirs.detach().abs().max().clamp_min(floor)
    error = float((ours - theirs).detach().abs().max() / scale)
    assert error <= rtol, f"{what}: largest difference {error:.2e} of the largest value (tolerance {rtol:.0e})"


@pytest.fixture(scope="module")
def parity():
    torch.manual_seed(0)
    model = SLATE(_config(dropout=0.0, variant="vanilla")).double()
    torch.manual_seed(1)
    images = torch.rand(3, 3, 16, 16, dtype=torch.float64)
    return model, _their_weights(model), images


def test_the_name_table_covers_every_weight_once(parity):
    model, _, _ = parity
    ours = [mine for _, mine in _name_table(model.config)]
    assert sorted(ours) == sorted(name for name, _ in model.named_parameters())


def test_dvae_embedding_slot_inputs_and_decoder_pieces_equal_theirs(parity):
    model, w, images = parity
    c = model.config
    model.eval()
    with torch.no_grad():
        logits = model.dvae.encode(images)
        _close(logits, dvae_encoder(w, images), "dVAE logits")
        soft = F.softmax(logits * 0.7, dim=1)
        _close(model.dvae.decode(soft), dvae_decoder(w, soft), "dVAE decoder")
        tokens = logits.argmax(1).flatten(1)
        sequence = model.embedding.sequence(tokens)
        one_hot = F.one_hot(tokens, c.vocab_size).double()
        theirs_sequence = embed(w, with_bos(one_hot))
        _close(sequence, theirs_sequence, "token + position embedding")
        inputs = model.slot_input(sequence[:, 1:])
        _close(inputs, slot_inputs(w, theirs_sequence[:, 1:]), "slot-attention inputs")
        memory = torch.randn(3, c.num_slots, c.d_model, dtype=torch.float64)
        hidden = model.decoder(sequence[:, :-1], memory)
        theirs_hidden = transformer_decoder(w, theirs_sequence[:, :-1], memory, c.num_blocks, c.num_heads)
        _close(model.head(hidden), _linear(w, "out", theirs_hidden, False), "decoder logits")
        # the key/value cache of generation gives the same hidden states, block 0's replaced input included
        cache = model.decoder.new_cache()
        steps = torch.cat([model.decoder(sequence[:, i:i + 1], memory, cache) for i in range(c.num_tokens)], dim=1)
        _close(steps, theirs_hidden, "decoder hidden states, one token at a time with the cache")


@pytest.mark.parametrize("variant, applications", [("vanilla", 3), ("IN", 4)])
def test_slots_and_masks_from_the_same_initial_slots_equal_theirs(parity, variant, applications):
    """vanilla iterates T = 3 times; IN applies the map T + 1 times (the last one differentiated): its value is
    theirs with 4 iterations, and its masks that last iteration's attention."""
    model, w, images = parity
    c = model.config
    model.slot_attention.variant = variant
    try:
        model.eval()
        with torch.no_grad():
            tokens = model.dvae.encode(images).argmax(1).flatten(1)
            inputs = model.slot_input(model.embedding.sequence(tokens)[:, 1:])
            start = torch.randn(3, c.num_slots, c.slot_dim, dtype=torch.float64)
            slots, attn = model.slot_attention(inputs, slots=start, return_attn=True)
            theirs_slots, attn_vis = slot_attention(w, inputs, start, applications)
            _close(slots, theirs_slots, f"{variant} slots")
            _close(attn, attn_vis.transpose(-1, -2), f"{variant} attention (masks)")
            # nearest upsampling of the token grid = their repeat_interleave (slate.py:66)
            grid = attn_vis.transpose(-1, -2).reshape(3, c.num_slots, c.grid, c.grid)
            _close(model.attention_masks(attn), grid.repeat_interleave(4, -2).repeat_interleave(4, -1), "masks")
    finally:
        model.slot_attention.variant = "vanilla"


class _Recorder:
    """Records what torch.rand / torch.randn hand our model, to give the transcription the same draws."""

    def __init__(self, monkeypatch):
        self.rand: list[torch.Tensor] = []
        self.randn: list[torch.Tensor] = []
        rand, randn = torch.rand, torch.randn

        def record_rand(*args, **kwargs):
            self.rand.append(rand(*args, **kwargs))
            return self.rand[-1]

        def record_randn(*args, **kwargs):
            self.randn.append(randn(*args, **kwargs))
            return self.randn[-1]

        monkeypatch.setattr(torch, "rand", record_rand)
        monkeypatch.setattr(torch, "randn", record_randn)

    def noise(self) -> dict[str, torch.Tensor]:
        # ours draws u ~ U(0, 1) and uses -log(-log u) (clamped); -log u is their Exponential(1) draw
        first, second = self.rand
        slots = {"slots": self.randn[0]} if self.randn else {}
        return {"exp1": -torch.log(first), "exp2": -torch.log(second), **slots}


def test_training_loss_and_every_gradient_equal_theirs(parity, monkeypatch):
    """SLATE.forward in training mode (vanilla: backprop through every iteration, as theirs): the dVAE's soft
    sample and its MSE, the targets from a second Gumbel sample, the cross-entropy, and each weight's gradient."""
    model, w, images = parity
    model.train()
    model.zero_grad()
    recorder = _Recorder(monkeypatch)
    torch.manual_seed(3)
    losses = model(images, tau=0.7)
    losses["loss"].backward()
    monkeypatch.undo()
    theirs_w = {name: value.clone().requires_grad_(True) for name, value in w.items()}
    theirs = slate_forward(theirs_w, model.config, images, 0.7, recorder.noise())
    theirs["loss"].backward()
    _close(losses["dvae_mse"], theirs["mse"], "dVAE MSE")
    _close(losses["ce"], theirs["cross_entropy"], "token cross-entropy")
    _close(losses["loss"], theirs["loss"], "loss")
    grads = {name: p.grad for name, p in model.named_parameters()}
    for their_name, mine in _name_table(model.config):
        grad = theirs_w[their_name].grad
        if their_name == "dictionary.dictionary.weight":
            grad = torch.cat([grad[1:], grad[:1]])  # back to our order: tokens, then BOS
        assert grads[mine] is not None, mine
        # norm_slots.bias shifts every slot's query alike, which the softmax over slots cancels: its gradient is
        # zero up to rounding (1e-18) in both, so gradients are compared against a floor of 1e-10
        _close(grads[mine], grad, f"gradient of {mine} ({their_name})", floor=1e-10)


def test_targets_come_from_a_second_independent_sample(parity, monkeypatch):
    """Our training tokens are theirs: the second Gumbel sample's argmax (slate.py:49), not the first's."""
    model, w, images = parity
    model.train()
    recorder = _Recorder(monkeypatch)
    torch.manual_seed(4)
    with torch.no_grad():
        _, tokens = model.tokenize(images, tau=1.0)
    monkeypatch.undo()
    noise = recorder.noise()
    logits = F.log_softmax(dvae_encoder(w, images), dim=1)
    second = gumbel_softmax(logits, 1.0, True, 1, noise["exp2"]).argmax(1).flatten(1)
    first = gumbel_softmax(logits, 1.0, True, 1, noise["exp1"]).argmax(1).flatten(1)
    assert torch.equal(tokens, second) and not torch.equal(tokens, first)


def test_generation_through_the_slots_equals_theirs(parity, monkeypatch):
    model, w, images = parity
    recorder = _Recorder(monkeypatch)
    torch.manual_seed(5)
    out = model.reconstruct(images)
    monkeypatch.undo()
    recon, generated = reconstruct_autoregressive(w, model.config, images, recorder.randn[0])
    assert torch.equal(out["generated"], generated)
    _close(out["recon"], recon, "reconstruction through the slots")


# ---- initialisation -----------------------------------------------------------------------------------------------

def _their_initialiser(name: str, shape: torch.Size, num_blocks: int) -> torch.Tensor:
    """A tensor drawn as singhgautam/slate draws the tensor ``name`` (utils.py, transformer.py, slot_attn.py)."""
    t = torch.empty(shape, dtype=torch.float64)
    gain = (3 * num_blocks) ** -0.5  # transformer.py:188
    if name == "positional_encoder.pe":
        return torch.nn.init.trunc_normal_(t)  # transformer.py:57: std 1, cut at +-2
    if name == "dictionary.dictionary.weight":
        return torch.nn.init.normal_(t)  # nn.Embedding's N(0, 1) (slate.py OneHotDictionary)
    if name in ("slot_attn.slot_mu", "slot_attn.slot_log_sigma"):
        return torch.nn.init.xavier_uniform_(t)  # slot_attn.py:95-96
    if name.endswith("gru.weight_hh"):
        return torch.nn.init.orthogonal_(t)  # utils.py:98
    if name.endswith("gru.weight_ih"):
        return torch.nn.init.xavier_uniform_(t)  # utils.py:97
    if name.endswith(".bias") or name.endswith("bias_ih") or name.endswith("bias_hh"):
        # zero biases (utils.py:56, 88, 101-102), except LayerNorm / GroupNorm biases, zero too
        return torch.nn.init.zeros_(t)
    if len(shape) == 1:
        return torch.nn.init.ones_(t)  # LayerNorm / Conv2dBlock norm weights (utils.py:68)
    if ".m.weight" in name or name.endswith(("ffn.0.weight", "slot_attn.mlp.0.weight", "slot_attention.mlp.0.weight")):
        return torch.nn.init.kaiming_uniform_(t, nonlinearity="relu")  # utils.py:51, 83 (weight_init='kaiming')
    if name.endswith(("proj_o.weight", "ffn.2.weight")):
        return torch.nn.init.xavier_uniform_(t, gain)  # transformer.py:18, 152 (gain)
    return torch.nn.init.xavier_uniform_(t)  # utils.py:53, 85 (xavier, gain 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_fresh_model_is_drawn_as_the_authors_draw_theirs(seed):
    """Each tensor's standard deviation matches the authors' initialiser's to 10% (zeros and ones exactly)."""
    torch.manual_seed(seed)
    model = SLATE(slate_config_for("paper-64", num_slots=NUM_SLOTS))
    ours = dict(model.named_parameters())
    for their_name, mine in _name_table(model.config):
        reference = _their_initialiser(their_name, ours[mine].shape, model.config.num_blocks)
        value = ours[mine].detach().double()
        if reference.std() == 0 or reference.numel() == 1:
            assert torch.equal(value, reference), mine
            continue
        ratio = float(value.std() / reference.std())
        assert abs(ratio - 1) < 0.1, f"{mine} ({their_name}): std {float(value.std()):.4g} vs theirs " \
                                     f"{float(reference.std()):.4g}"


def test_torch_init_keeps_pytorch_defaults_and_cpu_configs_have_their_measured_architecture():
    torch.manual_seed(0)
    model = SLATE(slate_config_for("paper-64", init="torch", num_slots=NUM_SLOTS))
    assert math.isclose(float(model.embedding.position.std()), 0.02, rel_tol=0.1)
    assert float(model.slot_input[1].bias.abs().max()) > 0  # PyTorch's uniform biases, not zeros
    theirs = (6, "relu", "replace", True, "last_step", "independent", "reference")
    for name in ("paper-64", "paper-96", "cpu-slate"):  # cpu-slate: theirs measured better (issue #22)
        config = slate_config_for(name)
        assert (config.dvae_encoder_blocks, config.decoder_activation, config.first_block_norm,
                config.attention_dropout, config.mask_attention, config.target_tokens, config.init) == theirs
    small = slate_config_for("cpu-small")  # never measured with theirs: keeps what it was measured with
    assert {field: getattr(small, field) for field in SLATEConfig.LEGACY} == dict(SLATEConfig.LEGACY)


def test_attention_weights_are_dropped_in_training_as_theirs():
    """transformer.py:43 drops the attention weights; with the output dropout taken out, a training pass then
    differs from an evaluation pass only where attention_dropout is on."""
    from deqslots.slate.transformer import Attention

    torch.manual_seed(0)
    x = torch.randn(2, 6, 8)
    for dropped in (True, False):
        attention = Attention(8, 2, dropout=0.5, attention_dropout=dropped)
        attention.out_drop = torch.nn.Identity()
        kv = attention.keys_values(x)
        train = attention.train()(x, kv, causal=True)
        evaluation = attention.eval()(x, kv, causal=True)
        assert torch.allclose(train, evaluation) != dropped
