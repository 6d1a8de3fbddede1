"""The interface every forward solver implements."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ..info import SolveInfo

__all__ = ["ForwardSolver", "FlatMap"]

FlatMap = Callable[[torch.Tensor], torch.Tensor]


class ForwardSolver:
    """Base class of forward solvers: immutable option objects with one ``solve`` method.

    :func:`solvers.fixed_point` calls ``solve`` on the flattened state; a subclass works on [B, D] tensors.

    Attributes:
        name: the solver's short name (reported as ``SolveInfo.solver``).

    Examples:
        The built-in solvers share the interface and can be called directly on a flat batch:

        >>> import torch, solvers
        >>> solver = solvers.Anderson(memory=3)
        >>> isinstance(solver, solvers.ForwardSolver)
        True
        >>> z, info = solver.solve(torch.cos, torch.zeros(2, 1), tol=1e-6, max_iter=50)
        >>> z.squeeze(1), info.solver, bool(info.converged.all())
        (tensor([0.7391, 0.7391]), 'anderson', True)
    """

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
