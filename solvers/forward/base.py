"""The interface every forward solver implements."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..info import SolveInfo

__all__ = ["ForwardSolver", "FlatMap"]

FlatMap = Callable[[torch.Tensor], torch.Tensor]


class ForwardSolver:
    """Base class of forward solvers: immutable option objects with one ``solve`` method."""

    name: str = "solver"

    def solve(self, f: FlatMap, z0: torch.Tensor, tol: Optional[float], max_iter: int,
              stop_mode: str = "abs", nonfinite: str = "raise", snapshots: tuple[int, ...] = ()
              ) -> tuple[torch.Tensor, SolveInfo]:
        """Find z with z = f(z) for every row of the flat batch ``z0`` [B, D].

        Args:
            f: batched map on flat states [B, D] -> [B, D]; rows must not interact.
            z0: initial guess [B, D].
            tol: per-sample tolerance, or None to run exactly ``max_iter`` evaluations.
            max_iter: most evaluations of ``f``.
            stop_mode: "abs" or "rel".
            nonfinite: "raise" or "best".
            snapshots: evaluation counts whose current iterate to keep in ``SolveInfo.states``.

        Returns:
            The per-sample best iterate [B, D] and a :class:`SolveInfo`.
        """
        raise NotImplementedError
