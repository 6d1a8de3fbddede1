"""The registry of trainable models: ``--model NAME`` -> its :class:`deqslots.training.protocol.ModelKind`.

A new model is a new module with a ``ModelKind`` subclass and one line here.

Examples:
    >>> from deqslots.training.registry import MODELS, model_kind
    >>> sorted(MODELS)
    ['slate', 'slot-attention']
    >>> model_kind("slate").title
    'SLATE'
"""

from __future__ import annotations

import torch

from ..slot_attention.kind import SlotAttentionKind
from .protocol import ModelKind
from ..slate.kind import SLATEKind

__all__ = ["MODELS", "model_kind", "kind_of"]

MODELS: dict[str, ModelKind] = {
    SlotAttentionKind.name: SlotAttentionKind(),
    SLATEKind.name: SLATEKind(),
}


def model_kind(name: str) -> ModelKind:
    """The kind ``--model name`` trains.

    Args:
        name: a key of :data:`MODELS`: "slot-attention" or "slate".

    Returns:
        The registered (stateless, shared) :class:`~deqslots.training.protocol.ModelKind` instance.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).

    Examples:
        >>> kind = model_kind("slot-attention")
        >>> kind.title, kind.model_class.__name__
        ('Slot Attention', 'SlotAutoencoder')
        >>> model_kind("vae")
        Traceback (most recent call last):
        ...
        ValueError: model must be one of slot-attention, slate; got 'vae'
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    return MODELS[name]


def kind_of(model: torch.nn.Module) -> ModelKind:
    """The registered kind whose ``model_class`` ``model`` is an instance of.

    Args:
        model: a trained or freshly built model (not wrapped in DistributedDataParallel).

    Returns:
        The first kind in :data:`MODELS` whose ``model_class`` the model is an instance of.

    Raises:
        ValueError: when no registered kind builds this class.

    Examples:
        >>> import torch
        >>> from deqslots.training.config import TrainConfig
        >>> model = model_kind("slot-attention").build(TrainConfig(resolution=16, num_slots=3))
        >>> kind_of(model).name
        'slot-attention'
        >>> kind_of(torch.nn.Linear(2, 2))
        Traceback (most recent call last):
        ...
        ValueError: no registered model kind builds Linear; add a ModelKind for it to ...
    """
    for kind in MODELS.values():
        if isinstance(model, kind.model_class):
            return kind
    raise ValueError(f"no registered model kind builds {type(model).__name__}; add a ModelKind for it to "
                     "deqslots.training.registry.MODELS")
