"""The interface every backward mode implements."""

from __future__ import annotations

import torch

from ..forward.base import FlatMap
from ..info import SolveInfo

__all__ = ["BackwardMode"]


class BackwardMode:
    """How gradients flow from a fixed point to the tensors the map closes over.

    ``unrolled`` differentiates through the forward solver itself (``differentiates_solver`` is True).
    Every other mode sees only the detached fixed point and builds a short graph from it in
    :meth:`attach`.

    Attributes:
        name: the mode's short name (the string :func:`solvers.as_backward` maps to it).
        differentiates_solver: whether the forward solve runs with autograd on (only ``unrolled``).

    Examples:
        A custom mode: ``f`` applied twice at the fixed point (a two-step unrolled gradient).

        >>> import torch, solvers
        >>> class TwoStep(solvers.BackwardMode):
        ...     name = "twostep"
        ...     def attach(self, f, z_star, info, on_fail):
        ...         return f(f(z_star.detach()))
        >>> w = torch.tensor(0.5, requires_grad=True)
        >>> z, _ = solvers.fixed_point(lambda z: w * z + 1, torch.zeros(1, 1), backward=TwoStep(), tol=1e-8)
        >>> round(z.item(), 4)
        2.0
        >>> z.sum().backward(); round(w.grad.item(), 4)  # d/dw (w (w z* + 1) + 1) at z* = 2: (w z* + 1) + w z* = 2 + 1
        3.0
    """

    name: str = "backward"
    differentiates_solver: bool = False

    def attach(self, f: FlatMap, z_star: torch.Tensor, info: SolveInfo, on_fail: str) -> torch.Tensor:
        """Return a tensor equal (or close) to ``f(z_star)`` whose graph gives this mode's gradient.

        Args:
            f: the flat map.
            z_star: the detached fixed point [B, D].
            info: the forward statistics; adjoint statistics are written to ``info.backward``.
            on_fail: the failure policy for an adjoint solve ("warn", "raise" or "ignore").

        Returns:
            Tensor [B, D]: the value returned as the fixed point (``f(z_star)``, or ``z_star`` itself for
            ``unrolled``), carrying this mode's graph to what ``f`` closes over.

        Raises:
            NotImplementedError: always, on the base class; subclasses implement it.
        """
        raise NotImplementedError
