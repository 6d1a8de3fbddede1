"""Evaluate the map on the samples still iterating only: converged samples stop costing compute.

The forward solvers track every sample's progress (:class:`solvers.forward._progress.Progress`). When
enough samples stopped, and the map is a :class:`CompactMap`, the solver keeps only the rows still
iterating of everything it carries, and the map is told which samples those are: it slices the
batch-shaped tensors the map takes alongside the state once, and from then on evaluates the map on those
samples only. Rows of the batch do not interact (per :func:`solvers.fixed_point`'s contract), so the
samples still iterating see exactly the arithmetic they would see in the whole batch.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from ._scope import SolveScope, evaluating_rows
from ._state import State, StateSpec

__all__ = ["CompactMap", "slice_batch"]


def slice_batch(values: tuple[Any, ...], rows: torch.Tensor, batch: int) -> tuple[Any, ...]:
    """``values`` with every tensor whose leading dimension is ``batch`` reduced to ``rows``."""
    return tuple(v.index_select(0, rows) if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == batch
                 else v for v in values)


class CompactMap:
    """A flat map that evaluates ``f(state, *args)`` on the samples :meth:`select_rows` names.

    Args:
        f: the user's map, called as ``f(state, *args)``.
        spec: the state's structure (full batch).
        args: extra arguments; tensors sharing the batch dimension are sliced with the state.
        full: the flat map of the whole batch (used until rows are selected).
        scope: the running solve, told which rows are evaluated (for :class:`SolveDropout`).
    """

    def __init__(self, f: Callable[..., State], spec: StateSpec, args: tuple[Any, ...],
                 full: Callable[[torch.Tensor], torch.Tensor], scope: SolveScope) -> None:
        self.f = f
        self.spec = spec
        self.args = args
        self.full = full
        self.scope = scope
        self.rows: Optional[torch.Tensor] = None
        self._part: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
        self.rows_evaluated = 0  # samples the map was run on, over all calls (for tests and benchmarks)

    def select_rows(self, rows: torch.Tensor) -> None:
        """From now on evaluate the samples ``rows`` [n] of the batch only (called by the solver)."""
        batch = self.spec.batch_size
        self.rows = rows
        sub_args = slice_batch(self.args, rows, batch)
        f = self.f
        self._part = self.spec.with_batch(int(rows.numel())).flat_map(lambda z: f(z, *sub_args))

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        self.rows_evaluated += z.shape[0]
        if self.rows is None or self._part is None:
            return self.full(z)
        with evaluating_rows(self.scope, self.rows):
            try:
                return self._part(z)
            except (RuntimeError, ValueError) as err:
                raise type(err)(
                    f"{err}\n(raised while evaluating the map on the {z.shape[0]} of {self.spec.batch_size} samples "
                    "still iterating: with compaction every tensor that shares the batch dimension must reach the "
                    "map through args, not a closure; pass compact=False otherwise)"
                ) from err
