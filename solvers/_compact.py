"""Evaluate the map only on the samples whose input changed: converged samples stop costing compute.

The forward solvers freeze a sample once it converged (or failed): its row of the state stops changing.
:class:`CompactMap` remembers the last input and output of every row and calls the map on the rows whose
input changed only, slicing the batch-shaped tensors the map takes alongside the state; the other rows
reuse their last output. This relies on nothing but the map being a fixed function of each row (rows do
not interact, per :func:`solvers.fixed_point`'s contract), so every solver gets it without change.
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
    """A flat map [B, D] -> [B, D] that evaluates ``f(state, *args)`` on the rows whose input changed.

    Args:
        f: the user's map, called as ``f(state, *args)``.
        spec: the state's structure (full batch).
        args: extra arguments; tensors sharing the batch dimension are sliced with the state.
        full: the flat map of the whole batch (used while every row changes).
        scope: the running solve, told which rows are evaluated (for :class:`SolveDropout`).
    """

    def __init__(self, f: Callable[..., State], spec: StateSpec, args: tuple[Any, ...],
                 full: Callable[[torch.Tensor], torch.Tensor], scope: SolveScope) -> None:
        self.f = f
        self.spec = spec
        self.args = args
        self.full = full
        self.scope = scope
        self.last_in: Optional[torch.Tensor] = None
        self.last_out: Optional[torch.Tensor] = None
        self.calls = 0
        self.rows_evaluated = 0  # samples the map was run on, over all calls (for tests and benchmarks)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        batch = z.shape[0]
        if self.last_in is None or self.last_out is None:
            out = self.full(z)
            rows_done = batch
        else:
            changed = (z != self.last_in).any(dim=1)
            rows = torch.nonzero(changed).squeeze(1)
            n = int(rows.numel())  # the host sync: how many rows to evaluate decides the call's shape
            if n == batch:
                out = self.full(z)
            elif n == 0:
                out = self.last_out
            else:
                out = self.last_out.index_copy(0, rows, self._rows(z.index_select(0, rows), rows, n))
            rows_done = n
        self.rows_evaluated += rows_done
        self.last_in, self.last_out = z, out
        return out

    def _rows(self, z: torch.Tensor, rows: torch.Tensor, n: int) -> torch.Tensor:
        spec = self.spec.with_batch(n)
        args = slice_batch(self.args, rows, self.spec.batch_size)
        where = f"the map's output at evaluation {self.calls} (on the {n} of {self.spec.batch_size} samples still iterating)"
        with evaluating_rows(self.scope, rows):
            try:
                out = self.f(spec.unflatten(z), *args)
            except RuntimeError as err:
                raise RuntimeError(
                    f"{err}\n(raised while evaluating the map on the {n} of {self.spec.batch_size} samples still "
                    "iterating: with compact=True every tensor that shares the batch dimension must reach the map "
                    "through args, not a closure; pass compact=False otherwise)"
                ) from err
        spec.check_same(out, where + " [with compact=True, batch-shaped tensors must be passed through args]")
        return spec.flatten(out)
