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

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    if name not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    return MODELS[name]


def kind_of(model: torch.nn.Module) -> ModelKind:
    """The registered kind whose ``model_class`` ``model`` is an instance of.

    Raises:
        ValueError: when no registered kind builds this class.
    """
    for kind in MODELS.values():
        if isinstance(model, kind.model_class):
            return kind
    raise ValueError(f"no registered model kind builds {type(model).__name__}; add a ModelKind for it to "
                     "deqslots.training.registry.MODELS")
