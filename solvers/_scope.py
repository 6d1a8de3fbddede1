"""What a running solve tells the code inside its map: which samples are being evaluated, per-solve masks.

Held in a :class:`contextvars.ContextVar` (per thread and per asyncio task, like torch's grad mode), set by
:func:`solvers.fixed_point` for the duration of one solve, including the backward mode's extra
applications of the map; nothing outlives the solve.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Iterator, Optional

import torch

__all__ = ["SolveScope", "current_scope", "solve_scope", "evaluating_rows"]


@dataclass
class SolveScope:
    """One solve as seen from inside its map.

    Attributes:
        batch: the full batch size B of the state.
        rows: indices [n] of the samples the current evaluation covers (in the order of the map's
            input rows), or None when it covers the whole batch.
        masks: per-solve dropout masks, keyed by the module that drew them (see :class:`SolveDropout`).
    """

    batch: int
    rows: Optional[torch.Tensor] = None
    masks: dict[int, torch.Tensor] = field(default_factory=dict)


_CURRENT: contextvars.ContextVar[Optional[SolveScope]] = contextvars.ContextVar("solvers_scope", default=None)


def current_scope() -> Optional[SolveScope]:
    """The innermost running solve, or None outside :func:`solvers.fixed_point`."""
    return _CURRENT.get()


@contextlib.contextmanager
def solve_scope(batch: int) -> Iterator[SolveScope]:
    """Open a fresh scope (fresh masks) for one solve; a nested solve gets its own."""
    scope = SolveScope(batch)
    token = _CURRENT.set(scope)
    try:
        yield scope
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def evaluating_rows(scope: SolveScope, rows: torch.Tensor) -> Iterator[None]:
    """Mark that the map is being evaluated on ``rows`` of the batch only."""
    previous = scope.rows
    scope.rows = rows
    try:
        yield
    finally:
        scope.rows = previous
