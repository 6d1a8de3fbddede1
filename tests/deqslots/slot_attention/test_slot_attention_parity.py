"""The ``paper-*`` configs ARE Locatello et al.'s object-discovery autoencoder as their TensorFlow code computes it.

The authors' forward pass (google-research ``slot_attention/model.py``; ``# model.py:LINE`` cites its lines) is
transcribed below in float64 torch with Keras' conventions written out: channel-last NHWC tensors, Conv2D kernels
[k, k, in, out] with SAME padding, Conv2DTranspose kernels [k, k, out, in] as the adjoint of that SAME conv (the
gradient of the conv with respect to its input, as TensorFlow defines ``conv2d_transpose``), Dense kernels [in, out],
GRUCell(reset_after=True) with kernel [in, 3H], recurrent kernel [H, 3H] in gate order z, r, h and bias [2, 3H],
LayerNormalization with epsilon 1e-3, and their position grid [y, x, 1 - y, 1 - x]. Our model's weights are copied
into that layout by an explicit name table (:func:`name_table`), and every piece is compared in float64: encoder
CNN, position-embedded features, slot-attention inputs, slots from the same initial slots, per-slot RGB and alpha,
masks, reconstruction, loss and the loss's gradient with respect to every weight.

The loss: the authors' data is in [-1, 1] (``data.py``: ``((image / 255.0) - 0.5) * 2.0``) and their loss is the
mean squared error there (``object_discovery/train.py:56``, ``utils.l2_loss``); ours is the same MSE on images in
[0, 1], so 4x smaller (and its gradients too), which Adam's update ignores but for its epsilon. We leave it so:
the test checks ``4 * ours == theirs``.

The ``paper-*`` decoder upsamples by 2 until the image size: at 128 its four stride-2 transposed convs are
model.py:151-158 (their code is fixed to 128); at 32, as in the parity test here, two of them, the architecture
otherwise unchanged.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deqslots.slot_attention.config import CONFIGS, AutoencoderConfig, config_for
from deqslots.slot_attention.autoencoder import SlotAutoencoder
from deqslots.training.schedule import learning_rate
from deqslots.training.config import TrainConfig

F64 = torch.float64
RESOLUTION, NUM_SLOTS, BATCH, ITERS = 32, 3, 2, 3
TOLERANCE = 1e-6  # relative (largest absolute difference over the largest absolute value), float64
# Their grid's channels are [y, x, 1 - y, 1 - x] (model.py:282, meshgrid "ij"); ours [x, y, 1 - x, 1 - y]:
# their channel j is our channel GRID_ORDER[j].
GRID_ORDER = [1, 0, 3, 2]
# Weights whose gradient is zero in exact arithmetic: norm_slots' beta shifts every slot's query by the same
# vector, so each input's logits by the same amount for every slot, which the softmax over slots ignores.
ZERO_GRADIENT = {"slot_attention/norm_slots/beta"}


# ---------------------------------------------------------------------------------------------------------------
# Keras' layers, written out (channel-last, TF weight layouts)
# ---------------------------------------------------------------------------------------------------------------

def dense(x, w, name, activation=None, bias=True):
    """layers.Dense: ``x @ kernel + bias``, kernel [in, out]."""
    y = x @ w[f"{name}/kernel"]
    if bias:
        y = y + w[f"{name}/bias"]
    return torch.relu(y) if activation == "relu" else y


def layer_norm(x, w, name, epsilon=1e-3):
    """layers.LayerNormalization() over the last axis: Keras' default epsilon 1e-3, biased variance."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + epsilon) * w[f"{name}/gamma"] + w[f"{name}/beta"]


def _same_padding(size, kernel, stride):
    """TensorFlow's SAME padding of one axis: output ceil(size / stride), pad_before = pad_total // 2."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


def conv2d_same(x, kernel, stride=1):
    """tf.nn.conv2d(padding="SAME") of NHWC ``x`` with kernel [k, k, in, out] (cross-correlation, no bias)."""
    k = kernel.shape[0]
    out_h, top, bottom = _same_padding(x.shape[1], k, stride)
    out_w, left, right = _same_padding(x.shape[2], k, stride)
    x = F.pad(x, (0, 0, left, right, top, bottom))  # NHWC: pads C, then W, then H
    y = 0
    for i in range(k):
        for j in range(k):
            window = x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride, :]
            y = y + window @ kernel[i, j]  # [B, out_h, out_w, in] @ [in, out]
    return y


def conv2d_transpose_same(x, kernel, stride):
    """tf.nn.conv2d_transpose(padding="SAME") of NHWC ``x`` [B, n, m, in] with kernel [k, k, out, in]: the adjoint
    of :func:`conv2d_same` from [B, stride * n, stride * m, out] to ``x``'s shape with that kernel read as a conv
    kernel [k, k, in_conv = out, out_conv = in] (TF computes it as conv2d_backprop_input). Output [B, s n, s m, out].
    """
    batch, n, m, _ = x.shape
    probe = torch.zeros(batch, stride * n, stride * m, kernel.shape[2], dtype=x.dtype, requires_grad=True)
    (adjoint,) = torch.autograd.grad(conv2d_same(probe, kernel, stride), probe, grad_outputs=x, create_graph=True)
    return adjoint


def conv(x, w, name, stride=1, activation=None, transpose=False):
    """layers.Conv2D / layers.Conv2DTranspose(padding="SAME") with bias."""
    kernel = w[f"{name}/kernel"]
    y = conv2d_transpose_same(x, kernel, stride) if transpose else conv2d_same(x, kernel, stride)
    y = y + w[f"{name}/bias"]
    return torch.relu(y) if activation == "relu" else y


def gru_cell(inputs, h, w, name):
    """layers.GRUCell(reset_after=True) (TF 2 Keras' default): gates z, r, h in that order along 3H; bias [2, 3H]
    = [input bias, recurrent bias]; sigmoid / tanh; new state z * h + (1 - z) * candidate."""
    kernel, recurrent, bias = w[f"{name}/kernel"], w[f"{name}/recurrent_kernel"], w[f"{name}/bias"]
    units = h.shape[-1]
    x = inputs @ kernel + bias[0]
    r_h = h @ recurrent + bias[1]
    x_z, x_r, x_h = x[..., :units], x[..., units:2 * units], x[..., 2 * units:]
    h_z, h_r, h_h = r_h[..., :units], r_h[..., units:2 * units], r_h[..., 2 * units:]
    z = torch.sigmoid(x_z + h_z)
    r = torch.sigmoid(x_r + h_r)
    candidate = torch.tanh(x_h + r * h_h)
    return z * h + (1 - z) * candidate


# ---------------------------------------------------------------------------------------------------------------
# The authors' model (slot_attention/model.py)
# ---------------------------------------------------------------------------------------------------------------

def build_grid(resolution):
    ranges = [np.linspace(0., 1., num=res) for res in resolution]  # model.py:281
    grid = np.meshgrid(*ranges, sparse=False, indexing="ij")  # model.py:282
    grid = np.stack(grid, axis=-1)  # model.py:283
    grid = np.reshape(grid, [resolution[0], resolution[1], -1])  # model.py:284
    grid = np.expand_dims(grid, axis=0)  # model.py:285
    grid = grid.astype(np.float32)  # model.py:286
    return torch.from_numpy(np.concatenate([grid, 1.0 - grid], axis=-1)).to(F64)  # model.py:287 (in float32)


def soft_position_embed(inputs, w, name, resolution):
    grid = build_grid(resolution)  # model.py:302
    return inputs + dense(grid, w, f"{name}/dense")  # model.py:301 (Dense, use_bias=True), model.py:305


def slot_attention(inputs, w, noise, num_iterations, trace):
    """SlotAttention.call (model.py:71-103), slot_size 64 and mlp_hidden_size 128 (model.py:174-178) read off
    the weights, epsilon 1e-8 (model.py:26); ``noise`` is model.py:78's tf.random.normal draw."""
    sa = "slot_attention"
    slot_size = w[f"{sa}/slots_mu"].shape[-1]
    epsilon = 1e-8  # model.py:26
    inputs = layer_norm(inputs, w, f"{sa}/norm_inputs")  # model.py:73 (model.py:43)
    k = dense(inputs, w, f"{sa}/k", bias=False)  # model.py:74 (model.py:61)
    v = dense(inputs, w, f"{sa}/v", bias=False)  # model.py:75 (model.py:62)
    slots = w[f"{sa}/slots_mu"] + torch.exp(w[f"{sa}/slots_log_sigma"]) * noise  # model.py:78-79
    trace["initial_slots"] = slots
    for _ in range(num_iterations):  # model.py:82
        slots_prev = slots  # model.py:83
        slots = layer_norm(slots, w, f"{sa}/norm_slots")  # model.py:84 (model.py:44)
        q = dense(slots, w, f"{sa}/q", bias=False)  # model.py:87 (model.py:60)
        q = q * slot_size ** -0.5  # model.py:88
        attn_logits = torch.einsum("bnd,bkd->bnk", k, q)  # model.py:89 (batch_dot(k, q, axes=-1))
        attn = torch.softmax(attn_logits, dim=-1)  # model.py:90: [B, N, K], softmax over slots
        attn = attn + epsilon  # model.py:94
        attn = attn / attn.sum(dim=-2, keepdim=True)  # model.py:95
        updates = torch.einsum("bnk,bnd->bkd", attn, v)  # model.py:96 (batch_dot(attn, v, axes=-2))
        slots = gru_cell(updates, slots_prev, w, f"{sa}/gru")  # model.py:100 (model.py:65)
        hidden = dense(layer_norm(slots, w, f"{sa}/norm_mlp"), w, f"{sa}/mlp/0", "relu")  # model.py:101, 45, 67
        slots = slots + dense(hidden, w, f"{sa}/mlp/1")  # model.py:101 (model.py:68)
    return slots  # model.py:103


def spatial_broadcast(slots, resolution):
    slots = slots.reshape(-1, slots.shape[-1])[:, None, None, :]  # model.py:109
    return slots.repeat(1, resolution[0], resolution[1], 1)  # model.py:110 (tf.tile)


def spatial_flatten(x):
    return x.reshape(-1, x.shape[1] * x.shape[2], x.shape[-1])  # model.py:116


def unstack_and_split(x, batch_size, num_channels=3):
    unstacked = x.reshape([batch_size, -1] + list(x.shape[1:]))  # model.py:121
    return unstacked[..., :num_channels], unstacked[..., num_channels:]  # model.py:122 (tf.split [3, 1])


def slot_attention_autoencoder(image, w, noise, num_iterations, trace):
    """SlotAttentionAutoEncoder.call (model.py:180-211); ``image`` NHWC in [-1, 1]. Fills ``trace``."""
    resolution = tuple(image.shape[1:3])
    x = image
    for i in range(4):  # model.py:184 (encoder_cnn, model.py:143-146: Conv2D(64, 5, SAME, relu), stride 1)
        x = conv(x, w, f"encoder_cnn/{i}", activation="relu")
    trace["encoder_cnn"] = x
    x = soft_position_embed(x, w, "encoder_pos", resolution)  # model.py:185 (model.py:165)
    trace["encoder_pos"] = x
    x = spatial_flatten(x)  # model.py:186
    hidden = dense(layer_norm(x, w, "layer_norm"), w, "mlp/0", "relu")  # model.py:187 (model.py:168-170)
    x = dense(hidden, w, "mlp/1")  # model.py:187 (model.py:171)
    trace["slot_attention_inputs"] = x
    slots = slot_attention(x, w, noise, num_iterations, trace)  # model.py:191
    trace["slots"] = slots
    decoder_initial_size = (8, 8)  # model.py:149
    x = spatial_broadcast(slots, decoder_initial_size)  # model.py:195
    x = soft_position_embed(x, w, "decoder_pos", decoder_initial_size)  # model.py:197 (model.py:166)
    # model.py:198, decoder_cnn (model.py:150-163): Conv2DTranspose(64, 5, strides 2, SAME, relu) up to the image
    # size (model.py:151-158: four of them from 8 to 128), Conv2DTranspose(64, 5, strides 1, SAME, relu)
    # (model.py:159-160), Conv2DTranspose(4, 3, strides 1, SAME) (model.py:161-162)
    ups = int(round(math.log2(resolution[0] / decoder_initial_size[0])))
    for i in range(ups):
        x = conv(x, w, f"decoder_cnn/{i}", stride=2, activation="relu", transpose=True)
    x = conv(x, w, f"decoder_cnn/{ups}", stride=1, activation="relu", transpose=True)
    x = conv(x, w, f"decoder_cnn/{ups + 1}", stride=1, transpose=True)
    trace["decoder_cnn"] = x
    recons, masks = unstack_and_split(x, batch_size=image.shape[0])  # model.py:202
    masks = torch.softmax(masks, dim=1)  # model.py:207
    recon_combined = (recons * masks).sum(dim=1)  # model.py:208
    trace.update(recons=recons, masks=masks, recon_combined=recon_combined)
    return recon_combined, recons, masks, slots  # model.py:211


def authors_loss(image, w, noise, num_iterations, trace):
    """object_discovery/train.py:54-56: l2_loss (utils.py: reduce_mean of the squared difference) of the
    [-1, 1] image (data.py: ``((image / 255.0) - 0.5) * 2.0``) and the reconstruction."""
    recon_combined = slot_attention_autoencoder(image, w, noise, num_iterations, trace)[0]
    return ((image - recon_combined) ** 2).mean()


# ---------------------------------------------------------------------------------------------------------------
# Our weights -> theirs
# ---------------------------------------------------------------------------------------------------------------

class Entry(NamedTuple):
    ours: tuple[str, ...]  # our parameter name(s)
    theirs: str  # the transcription's weight (TF layout)
    to_tf: Callable[..., torch.Tensor]  # our tensor(s) -> theirs; linear, so it maps gradients too
    keras_init: str  # Keras' default initialiser of that weight: glorot_uniform, orthogonal, zeros, ones


def _same(t):
    return t


def _linear(t):  # nn.Linear weight [out, in] -> Dense kernel [in, out]
    return t.T


def _position(t):  # nn.Linear(4, C) of our grid [x, y, 1 - x, 1 - y] -> Dense kernel [4, C] of theirs [y, x, ...]
    return t.T[GRID_ORDER]


def _conv(t):  # nn.Conv2d weight [out, in, k, k] -> Conv2D kernel [k, k, in, out]
    return t.permute(2, 3, 1, 0)


def _conv_transpose(t):  # nn.ConvTranspose2d weight [in, out, k, k] -> Conv2DTranspose kernel [k, k, out, in]
    return t.permute(2, 3, 1, 0)


def _zrh(t):  # torch's GRU gate blocks r, z, n along dim 0 -> Keras' z, r, h
    h = t.shape[0] // 3
    return torch.cat([t[h:2 * h], t[:h], t[2 * h:]])


def _gru_kernel(t):  # weight_ih [3H, in] (r, z, n) -> kernel [in, 3H] (z, r, h); weight_hh likewise
    return _zrh(t).T


def _gru_bias(b_ih, b_hh):  # bias_ih, bias_hh [3H] (r, z, n) -> bias [2, 3H] (z, r, h): input, recurrent
    return torch.stack([_zrh(b_ih), _zrh(b_hh)])


def name_table(model: SlotAutoencoder) -> list[Entry]:
    """Every parameter of ``model`` (a paper-config SlotAutoencoder) and the transcription's weight it becomes."""
    table: list[Entry] = []

    def affine(ours, theirs, weight_fn, init="glorot_uniform"):
        table.append(Entry((f"{ours}.weight",), f"{theirs}/kernel", weight_fn, init))
        table.append(Entry((f"{ours}.bias",), f"{theirs}/bias", _same, "zeros"))

    def norm(ours, theirs):
        table.append(Entry((f"{ours}.weight",), f"{theirs}/gamma", _same, "ones"))
        table.append(Entry((f"{ours}.bias",), f"{theirs}/beta", _same, "zeros"))

    convs = [i for i, m in enumerate(model.encoder) if isinstance(m, torch.nn.Conv2d)]
    for n, i in enumerate(convs):
        affine(f"encoder.{i}", f"encoder_cnn/{n}", _conv)
    affine("encoder_pos.proj", "encoder_pos/dense", _position)
    norm("encoder_norm", "layer_norm")
    affine("encoder_mlp.0", "mlp/0", _linear)
    affine("encoder_mlp.2", "mlp/1", _linear)
    sa = "slot_attention"
    table.append(Entry((f"{sa}.slots_mu",), f"{sa}/slots_mu", _same, "glorot_uniform"))
    table.append(Entry((f"{sa}.slots_log_sigma",), f"{sa}/slots_log_sigma", _same, "glorot_uniform"))
    norm(f"{sa}.norm_inputs", f"{sa}/norm_inputs")
    for ours, theirs in (("to_k", "k"), ("to_v", "v"), ("to_q", "q")):
        table.append(Entry((f"{sa}.{ours}.weight",), f"{sa}/{theirs}/kernel", _linear, "glorot_uniform"))
    norm(f"{sa}.norm_slots", f"{sa}/norm_slots")
    table.append(Entry((f"{sa}.gru.weight_ih",), f"{sa}/gru/kernel", _gru_kernel, "glorot_uniform"))
    table.append(Entry((f"{sa}.gru.weight_hh",), f"{sa}/gru/recurrent_kernel", _gru_kernel, "orthogonal"))
    table.append(Entry((f"{sa}.gru.bias_ih", f"{sa}.gru.bias_hh"), f"{sa}/gru/bias", _gru_bias, "zeros"))
    norm(f"{sa}.norm_mlp", f"{sa}/norm_mlp")
    affine(f"{sa}.mlp.0", f"{sa}/mlp/0", _linear)
    affine(f"{sa}.mlp.2", f"{sa}/mlp/1", _linear)
    affine("decoder_pos.proj", "decoder_pos/dense", _position)
    deconvs = [i for i, m in enumerate(model.decoder) if isinstance(m, torch.nn.ConvTranspose2d)]
    for n, i in enumerate(deconvs):
        affine(f"decoder.{i}", f"decoder_cnn/{n}", _conv_transpose)
    return table


def to_theirs(table: list[Entry], tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our tensors by parameter name (weights or their gradients) -> the transcription's, through ``table``."""
    return {e.theirs: e.to_tf(*(tensors[name] for name in e.ours)) for e in table}


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    ours, theirs = ours.detach(), theirs.detach()
    return float((ours - theirs).abs().max() / theirs.abs().max())


# ---------------------------------------------------------------------------------------------------------------
# The comparisons
# ---------------------------------------------------------------------------------------------------------------

def paper_model(resolution=RESOLUTION, num_slots=NUM_SLOTS, variant="vanilla", seed=0) -> SlotAutoencoder:
    """A paper-64 model (only resolution and slot count changed) in float64, every weight moved off its initial
    value (zero biases, unit LayerNorm gains) so that each one's layout matters."""
    torch.manual_seed(seed)
    model = SlotAutoencoder(config_for("paper-64", resolution=resolution, num_slots=num_slots, variant=variant))
    model = model.to(F64)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def images_and_noise(model: SlotAutoencoder, batch=BATCH):
    c = model.config
    images = torch.rand(batch, 3, c.resolution, c.resolution, dtype=F64, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(batch, c.num_slots, c.slot_dim, dtype=F64, generator=torch.Generator().manual_seed(2))
    return images, noise


def ours_with_trace(model: SlotAutoencoder, images: torch.Tensor, slots: torch.Tensor, iters=None):
    """Our forward with the intermediate outputs of its submodules (forward hooks), and the loss."""
    trace: dict[str, torch.Tensor] = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda _m, _i, out, name=name: trace.__setitem__(name, out))
        for name in ("encoder", "encoder_pos", "encoder_mlp", "slot_attention", "decoder")]
    try:
        out = model(images, iters=iters, slots=slots)
    finally:
        for hook in hooks:
            hook.remove()
    return out, trace, model.loss(images, step=0, out=out)


def compare(ours: dict, theirs: dict, batch: int, num_slots: int) -> dict[str, float]:
    """Relative errors of each piece, ours brought to their layout (NHWC; [-1, 1] for images)."""
    nhwc = (0, 2, 3, 1)
    decoded = ours["trace"]["decoder"].permute(*nhwc)  # [B K, H, W, 4]
    size = decoded.shape[1]
    out = ours["out"]
    pieces = {
        "encoder CNN": (ours["trace"]["encoder"].permute(*nhwc), theirs["encoder_cnn"]),
        "position-embedded features": (ours["trace"]["encoder_pos"], theirs["encoder_pos"]),
        "slot-attention inputs": (ours["trace"]["encoder_mlp"], theirs["slot_attention_inputs"]),
        "slots": (out["slots"], theirs["slots"]),
        "decoder output": (decoded, theirs["decoder_cnn"]),
        "per-slot RGB": ((2 * out["rgb"] - 1).permute(0, 1, 3, 4, 2), theirs["recons"]),
        "per-slot alpha": (decoded[..., 3].reshape(batch, num_slots, size, size), theirs["decoder_cnn"][..., 3]
                           .reshape(batch, num_slots, size, size)),
        "masks": (out["masks"], theirs["masks"][..., 0]),
        "reconstruction": ((2 * out["recon"] - 1).permute(*nhwc), theirs["recon_combined"]),
    }
    return {name: relative_error(a, b) for name, (a, b) in pieces.items()}


def use_their_grids(model: SlotAutoencoder) -> None:
    """Give ``model`` their position grids (model.py:280-287), in our channel order."""
    for embedding in (model.encoder_pos, model.decoder_pos):
        size = embedding.grid.shape[0]
        embedding.grid = build_grid((size, size))[0][..., GRID_ORDER]  # GRID_ORDER is its own inverse


def test_position_grids_differ_from_theirs_by_one_float32_rounding_at_most():
    """Ours is torch.linspace in float32; theirs NumPy's float64 linspace cast to float32 (model.py:281, 286): the
    two round some points differently, by one float32 ulp (6e-8). The parity below is < 1e-6 with our grids and
    float64 rounding (< 1e-10) with theirs, so the grids are the only other difference."""
    model = paper_model()
    for embedding in (model.encoder_pos, model.decoder_pos):
        size = embedding.grid.shape[0]
        theirs = build_grid((size, size))[0][..., GRID_ORDER]
        assert float((embedding.grid - theirs).abs().max()) <= 2.0 ** -24


@pytest.mark.parametrize("grids, tolerance", [("ours", TOLERANCE), ("theirs", 1e-10)])
def test_paper_forward_and_gradients_are_the_authors(grids, tolerance):
    model = paper_model()
    if grids == "theirs":
        use_their_grids(model)
    table = name_table(model)
    params = dict(model.named_parameters())
    # the table names every parameter once and nothing else
    assert sorted(name for e in table for name in e.ours) == sorted(params)
    images, noise = images_and_noise(model)
    # the same initial slots: ours drawn by our sampler, theirs by model.py:78 from the same noise
    slots = model.slot_attention.initial_slots(BATCH, generator=torch.Generator().manual_seed(2))
    out, trace, loss = ours_with_trace(model, images, slots)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))

    weights = {name: t.detach().clone().requires_grad_() for name, t in to_theirs(table, params).items()}
    theirs: dict[str, torch.Tensor] = {}
    image = (images - 0.5) * 2.0  # data.py: ((image / 255.0) - 0.5) * 2.0; ours are image / 255 already
    their_loss = authors_loss(image.permute(0, 2, 3, 1), weights, noise, ITERS, theirs)
    their_grads = dict(zip(weights, torch.autograd.grad(their_loss, list(weights.values()))))

    errors = compare({"out": out, "trace": trace}, theirs, BATCH, NUM_SLOTS)
    errors["initial slots"] = relative_error(slots, theirs["initial_slots"])
    # ours is the MSE on [0, 1] images, theirs on [-1, 1]: 4x ours
    errors["loss (4x ours)"] = relative_error(4 * loss, their_loss)
    scale = max(float(g.abs().max()) for g in their_grads.values())
    for name, grad in to_theirs(table, grads).items():
        if name in ZERO_GRADIENT:  # zero but for rounding, in both: compared to the other gradients' scale
            assert max(float(grad.abs().max()), float(their_grads[name].abs().max())) < 1e-12 * scale, name
            continue
        errors[f"d loss / d {name}"] = relative_error(4 * grad, their_grads[name])
    assert len(their_grads) == len(table) and len(errors) == 11 + len(table) - len(ZERO_GRADIENT)
    worst = max(errors, key=errors.get)
    print(f"largest relative error with {grids} grids: {errors[worst]:.1e} ({worst}); {len(errors)} comparisons")
    assert errors[worst] < tolerance, {k: v for k, v in errors.items() if v >= tolerance}


@pytest.mark.parametrize("training", [True, False])
def test_implicit_forward_is_the_authors_with_one_more_iteration(training):
    """IN iterates T times without a graph, then applies the map once more with it: T + 1 of their iterations.
    (Its gradient is by design not backprop through all of them, so gradient parity is vanilla's, above.)"""
    vanilla = paper_model()
    model = SlotAutoencoder(vanilla.config.replace(variant="IN")).to(F64)
    model.load_state_dict(vanilla.state_dict())
    model.train(training)
    images, noise = images_and_noise(model)
    slots = model.slot_attention.initial_slots(BATCH, generator=torch.Generator().manual_seed(2))
    out, trace, _ = ours_with_trace(model, images, slots)
    weights = to_theirs(name_table(model), {k: v.detach() for k, v in model.named_parameters()})
    theirs: dict[str, torch.Tensor] = {}
    slot_attention_autoencoder((2 * images - 1).permute(0, 2, 3, 1), weights, noise, ITERS + 1, theirs)
    errors = compare({"out": out, "trace": trace}, theirs, BATCH, NUM_SLOTS)
    assert max(errors.values()) < TOLERANCE, errors


def test_paper_128_forward_is_the_authors_at_their_resolution():
    """At 128 our paper config is their code's exact architecture (four stride-2 transposed convs)."""
    model = paper_model(resolution=128, num_slots=2)
    assert sum(m.stride == (2, 2) for m in model.decoder if isinstance(m, torch.nn.ConvTranspose2d)) == 4
    images, noise = images_and_noise(model, batch=1)
    slots = model.slot_attention.initial_slots(1, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out, trace, _ = ours_with_trace(model, images, slots)
    weights = to_theirs(name_table(model), {k: v.detach() for k, v in model.named_parameters()})
    theirs: dict[str, torch.Tensor] = {}
    slot_attention_autoencoder((2 * images - 1).permute(0, 2, 3, 1), weights, noise, ITERS, theirs)
    errors = compare({"out": out, "trace": trace}, theirs, 1, 2)
    assert max(errors.values()) < TOLERANCE, errors


# ---------------------------------------------------------------------------------------------------------------
# Configuration, recipe, initialisation
# ---------------------------------------------------------------------------------------------------------------

def test_paper_configs_have_the_authors_values_and_recipe():
    for name in ("paper-32", "paper-64", "paper-128"):
        c = config_for(name)
        assert (c.init, c.layer_norm_eps, c.transposed_padding, c.attention_guidance_steps) == (
            "reference", 1e-3, "same", 0)
        # model.py:143-178: four 5x5 convs of 64, 8x8 broadcast, slots of 64, MLP 128, 3 iterations, 7 slots
        assert (c.channels, c.encoder_strides, c.encoder_kernel, c.broadcast, c.slot_dim, c.mlp_hidden) == (
            64, (1, 1, 1, 1), 5, 8, 64, 128)
        assert (c.iters, c.num_slots, c.decoder_kernel, c.decoder_refine, c.mask_source) == (3, 7, 5, 1, "decoder")
        assert (c.decoder_resolution, c.decoder_position_frequencies, c.slot_init) == (None, 0, "gaussian")
        # object_discovery/train.py:34-43, 85: batch 64, Adam 4e-4, 500k steps, warm-up 10k, halving per 100k
        run = TrainConfig(config=name)
        assert (run.steps, run.batch_size, run.lr, run.warmup, run.decay, run.grad_clip) == (
            500_000, 64, 4e-4, 10_000, 100_000, None)
    assert AutoencoderConfig().replace(resolution=64) == config_for("paper-64")


def test_paper_schedule_is_the_authors():
    """object_discovery/train.py:108-114: base * step / warmup during the warm-up, times 0.5 ** (step / decay).
    Ours warms up from (step + 1) / warmup (one step ahead: their step 0 has rate 0), the decay is theirs."""
    run = TrainConfig(config="paper-64")

    def theirs(step):
        rate = 4e-4 * step / 10_000 if step < 10_000 else 4e-4  # train.py:108-112
        return rate * 0.5 ** (step / 100_000)  # train.py:113-114

    for step in (10_000, 10_001, 123_456, 499_999):
        assert learning_rate(step, run.lr, run.warmup, 0.5, run.decay) == pytest.approx(theirs(step), rel=1e-12)
    for step in (0, 1, 5_000, 9_999):
        warm = theirs(step + 1) / 0.5 ** ((step + 1) / 100_000) * 0.5 ** (step / 100_000)
        assert learning_rate(step, run.lr, run.warmup, 0.5, run.decay) == pytest.approx(warm, rel=1e-12)


@pytest.mark.parametrize("name", ["cpu-small", "cpu-objects", "cpu-small-decoder-masks"])
def test_cpu_configs_keep_the_legacy_values(name):
    c = CONFIGS[name]
    assert {field: getattr(c, field) for field in AutoencoderConfig.LEGACY} == dict(AutoencoderConfig.LEGACY)
    assert dict(AutoencoderConfig.LEGACY) == {"init": "torch", "layer_norm_eps": 1e-5, "transposed_padding": "torch"}
    model = SlotAutoencoder(c)
    assert model.encoder_norm.eps == model.slot_attention.norm_inputs.eps == 1e-5
    assert not any(type(m).__name__ == "SameConvTranspose2d" for m in model.decoder)


def _keras_fans(shape):
    """tf.keras.initializers' _compute_fans: a 2-D [in, out] kernel's fans are its dims; an N-D kernel's are
    shape[-2] and shape[-1] times the receptive field prod(shape[:-2])."""
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _keras_std(init, shape):
    """The standard deviation of Keras' initialiser over a TF-layout weight of ``shape``."""
    if init == "glorot_uniform":  # U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)): std limit / sqrt 3
        fan_in, fan_out = _keras_fans(shape)
        return math.sqrt(2.0 / (fan_in + fan_out))
    if init == "orthogonal":  # a [rows, cols] matrix with orthonormal rows (or columns): mean square 1 / max
        rows, cols = math.prod(shape[:-1]), shape[-1]
        return 1.0 / math.sqrt(max(rows, cols))
    raise AssertionError(init)


def test_fresh_paper_model_is_drawn_as_keras_draws_it():
    torch.manual_seed(0)
    model = SlotAutoencoder(config_for("paper-64", num_slots=4))
    table = name_table(model)
    weights = to_theirs(table, {k: v.detach() for k, v in model.named_parameters()})
    checked = 0
    for entry in table:
        w = weights[entry.theirs]
        if entry.keras_init == "zeros":
            assert torch.count_nonzero(w) == 0, entry.theirs
        elif entry.keras_init == "ones":
            assert torch.all(w == 1), entry.theirs
        else:
            expected = _keras_std(entry.keras_init, tuple(w.shape))
            rms = float(w.pow(2).mean().sqrt())  # the laws are centred
            assert rms == pytest.approx(expected, rel=0.1), (entry.theirs, rms, expected)
            if entry.keras_init == "glorot_uniform":
                assert float(w.abs().max()) <= math.sqrt(3) * expected + 1e-7, entry.theirs
            else:  # orthogonal: Keras' [H, 3H] recurrent kernel has orthonormal rows
                gram = w @ w.T
                assert torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-5), entry.theirs
        checked += 1
    assert checked == len(table) and any(e.keras_init == "orthogonal" for e in table)


def test_torch_init_keeps_pytorchs_defaults():
    torch.manual_seed(0)
    model = SlotAutoencoder(config_for("paper-64", num_slots=4, init="torch"))
    conv = model.encoder[0]
    assert float(conv.bias.detach().abs().min()) > 0  # PyTorch draws biases; Keras zeros them
    fan_in = conv.weight[0].numel()
    # kaiming_uniform(a = sqrt 5): U(-1 / sqrt(fan_in), 1 / sqrt(fan_in)), std 1 / sqrt(3 fan_in)
    assert float(conv.weight.detach().std()) == pytest.approx(1 / math.sqrt(3 * fan_in), rel=0.1)
    keras = _keras_std("glorot_uniform", (5, 5, 3, 64))
    assert abs(float(conv.weight.detach().std()) / keras - 1) > 0.3  # so the Keras check above would fail on it
    # the same draws as before the scheme existed: "reference" re-draws after them, the slots' Gaussian aside
    torch.manual_seed(0)
    reference = SlotAutoencoder(config_for("paper-64", num_slots=4))
    assert torch.equal(model.slot_attention.slots_mu, reference.slot_attention.slots_mu)
    assert not torch.equal(model.encoder[0].weight, reference.encoder[0].weight)


@pytest.mark.parametrize("change, message", [
    ({"init": "keras"}, "init must be one of reference, torch .*got 'keras'"),
    ({"layer_norm_eps": 0.0}, r"layer_norm_eps must be a number > 0 \(Keras' 1e-3, PyTorch's 1e-5\); got 0.0"),
    ({"layer_norm_eps": -1e-3}, "layer_norm_eps must be a number > 0"),
    ({"layer_norm_eps": "1e-3"}, "layer_norm_eps must be a number > 0"),
    ({"transposed_padding": "valid"}, "transposed_padding must be one of same, torch .*got 'valid'"),
    # checked only when the model was built
    ({"variant": "XX"}, "variant must be one of vanilla, IN, BN, BB, IB; got 'XX'"),
])
def test_bad_values_are_refused_naming_the_valid_ones(change, message):
    with pytest.raises(ValueError, match=message):
        config_for("paper-64", **change)
    with pytest.raises(ValueError, match=message):
        AutoencoderConfig(**change)
