"""How fresh models are initialised: each model's authors' scheme ("reference") or PyTorch's defaults ("torch").

The scheme is part of a model's configuration (``init``), because the same architecture trains differently
from another starting point (docs/benchmarks/notebook.md, "The reference models"): SLATE's positional embedding,
for one, is drawn 44x larger by its authors than by our earlier default.

- Slot Attention (google-research ``slot_attention/model.py``, TensorFlow): Keras' defaults, never stated in
  the paper but what its results were trained from: glorot-uniform kernels of every Dense, Conv2D and
  Conv2DTranspose layer, zero biases, the GRU cell's input kernel glorot-uniform and its recurrent kernel
  orthogonal, LayerNorm one / zero, the initial-slot mean and log-sigma glorot-uniform over [1, 1, D].
- SLATE (singhgautam/slate ``utils.py``, ``transformer.py``, ``slot_attn.py``): xavier-uniform linears with
  zero biases, kaiming-uniform (ReLU gain) for the convolutions of the dVAE's conv blocks and for each linear
  that a ReLU follows, the attention output and the feed-forward network's second layer with gain
  (3 x blocks)^-1/2, GRU xavier / orthogonal with zero biases, the initial-slot mean and log-sigma
  xavier-uniform over [1, 1, D] (torch's fans), and the positional embedding ``trunc_normal_`` with std 1.

PyTorch's defaults differ: kaiming-uniform(a = sqrt 5) weights with uniform non-zero biases, a transposed
conv's fan-in counted from its output channels.

Examples:
    >>> import torch
    >>> from deqslots import SlotAutoencoder, config_for
    >>> torch.manual_seed(0) and None
    >>> model = SlotAutoencoder(config_for("cpu-small", init="reference"))
    >>> float(model.encoder[0].bias.detach().abs().max())
    0.0
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["INITS", "check_init", "keras_defaults_", "slate_reference_"]

INITS = ("reference", "torch")


def check_init(value: object, what: str) -> None:
    """Refuse an unknown scheme, naming ``what`` (e.g. ``"SLATE init"``) and the known ones.

    Args:
        value: the scheme asked for; valid: ``"reference"`` or ``"torch"`` (:data:`INITS`).
        what: how the error message names the setting.

    Raises:
        ValueError: ``value`` is not in :data:`INITS`.

    Examples:
        >>> from deqslots.nn.initialization import check_init
        >>> check_init("reference", "init")
        >>> check_init("xavier", "SLATE init")
        Traceback (most recent call last):
        ...
        ValueError: SLATE init must be one of reference, torch (the authors' scheme or PyTorch's defaults); got 'xavier'
    """
    if value not in INITS:
        raise ValueError(f"{what} must be one of {', '.join(INITS)} (the authors' scheme or PyTorch's defaults); "
                         f"got {value!r}")


def _zero_bias(module: nn.Module) -> None:
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def _gru_(gru: nn.GRUCell) -> None:
    # The input kernel over its whole [3H, in] matrix (fans in and 3H, as Keras' [in, 3H] kernel); the
    # recurrent one orthogonal over the whole [3H, H] matrix: the transpose of Keras' [H, 3H] kernel with
    # orthonormal rows, its gate blocks permuted (Keras z, r, h; torch r, z, n), which leaves the law unchanged.
    nn.init.xavier_uniform_(gru.weight_ih)
    nn.init.orthogonal_(gru.weight_hh)
    nn.init.zeros_(gru.bias_ih)
    nn.init.zeros_(gru.bias_hh)


@torch.no_grad()
def keras_defaults_(module: nn.Module) -> None:
    """Re-draw every weight of ``module`` as Keras' defaults would (Slot Attention's initialisation), in place.

    Linear, Conv2d and ConvTranspose2d weights glorot-uniform (the bound sqrt(6 / (fan_in + fan_out)) is the
    same whichever way a transposed conv's fans are counted) with zero biases; GRU cells as :func:`_gru_`;
    LayerNorm one / zero. The initial-slot parameters of :class:`deqslots.SlotAttention` already follow
    Keras' glorot over [1, 1, D] (fans 1 and D) and are left as they are.

    Args:
        module: any module; every submodule of the kinds above is re-drawn, others are left as they are.

    Examples:
        >>> import torch
        >>> from deqslots.nn.initialization import keras_defaults_
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8))
        >>> keras_defaults_(net)
        >>> weight, bias = net[0].weight.detach(), net[0].bias.detach()
        >>> float(bias.abs().max()), float(weight.abs().max()) <= (6 / (4 + 8)) ** 0.5
        (0.0, True)
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            _zero_bias(m)
        elif isinstance(m, nn.GRUCell):
            _gru_(m)
        elif isinstance(m, nn.LayerNorm):
            m.reset_parameters()


def _linear_(layer: nn.Linear, relu: bool = False, gain: float = 1.0) -> None:
    # singhgautam/slate utils.py linear(): kaiming-uniform for weight_init='kaiming', else xavier with a gain
    if relu:
        nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    else:
        nn.init.xavier_uniform_(layer.weight, gain)
    _zero_bias(layer)


@torch.no_grad()
def slate_reference_(model: nn.Module) -> None:
    """Re-draw every weight of a :class:`deqslots.SLATE` as SLATE's code does (see the module docstring).

    Args:
        model: a freshly built SLATE (its submodules ``dvae``, ``embedding``, ``slot_input``,
            ``slot_attention``, ``slot_proj``, ``decoder``, ``head`` and the optional ``feature_proj``).

    Examples:
        ``SLATE(config)`` calls it when ``config.init == "reference"``; on a model built with PyTorch's defaults:

        >>> import torch
        >>> from deqslots import SLATE
        >>> from deqslots.nn.initialization import slate_reference_
        >>> from deqslots.slate import slate_config_for
        >>> torch.manual_seed(0) and None
        >>> model = SLATE(slate_config_for("cpu-small", init="torch"))
        >>> before = float(model.embedding.position.detach().std())  # torch's default: std 0.02
        >>> slate_reference_(model)
        >>> after = float(model.embedding.position.detach().std())  # trunc_normal_ with std 1, cut at +-2
        >>> after > 10 * before, float(model.slot_attention.gru.bias_ih.detach().abs().max())
        (True, 0.0)
    """
    for m in model.dvae.modules():
        if isinstance(m, nn.Conv2d):
            # conv blocks (bias-free, a norm and ReLU after) kaiming; the last 1x1 convs xavier with zero bias
            if m.bias is None:
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
            else:
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.GroupNorm):
            m.reset_parameters()
    model.embedding.dictionary.reset_parameters()  # N(0, 1), as nn.Embedding draws it in SLATE too
    nn.init.trunc_normal_(model.embedding.position, std=1.0, a=-2.0, b=2.0)
    first, _, second = model.slot_input[1:]
    _linear_(first, relu=True)
    _linear_(second)
    sa = model.slot_attention
    for layer in (sa.to_q, sa.to_k, sa.to_v):
        _linear_(layer)
    _gru_(sa.gru)
    _linear_(sa.mlp[0], relu=True)
    _linear_(sa.mlp[2])
    if sa.init == "gaussian":
        # torch's xavier over [1, 1, D]: fans D and D, so the bound is sqrt(3 / D) (Keras' would be sqrt(6 / (1 + D)))
        nn.init.xavier_uniform_(sa.slots_mu)
        nn.init.xavier_uniform_(sa.slots_log_sigma)
    else:
        nn.init.xavier_uniform_(sa.slots_init)
    _linear_(model.slot_proj)
    _linear_(model.head)
    if model.feature_proj is not None:
        _linear_(model.feature_proj)
    gain = (3 * len(model.decoder.blocks)) ** -0.5
    for block in model.decoder.blocks:
        for attention in (block.self_attn, block.cross_attn):
            for layer in (attention.to_q, attention.to_k, attention.to_v):
                _linear_(layer)
            _linear_(attention.out, gain=gain)
        _linear_(block.mlp[0], relu=True)
        _linear_(block.mlp[2], gain=gain)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.reset_parameters()
