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
        """
        raise NotImplementedError
