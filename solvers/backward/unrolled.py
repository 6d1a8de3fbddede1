"""Backpropagation through every forward step (the paper's "vanilla")."""

from __future__ import annotations

import torch

from .._options import options
from ..forward.base import FlatMap
from ..info import SolveInfo
from .base import BackwardMode

__all__ = ["Unrolled"]


@options
class Unrolled(BackwardMode):
    """Autograd through the whole forward solve; memory grows linearly with the iterations.

    The forward solver runs with autograd on, so the returned fixed point depends on the initial state
    too (slot attention's learned initial slots get gradients only in this mode).

    Examples:
        >>> import torch, solvers
        >>> w = torch.tensor(0.5, requires_grad=True)
        >>> z, _ = solvers.fixed_point(lambda z: w * z + 1, torch.zeros(1, 1), forward="iterate",
        ...                            backward="unrolled", tol=None, max_iter=3)
        >>> z.sum().backward(); w.grad.item()  # d/dw (1 + w + w^2) at w = 0.5
        2.0
    """

    name = "unrolled"
    differentiates_solver = True

    def attach(self, f: FlatMap, z_star: torch.Tensor, info: SolveInfo, on_fail: str) -> torch.Tensor:
        return z_star
