"""Truncated Neumann series of (I - J)^-1 as the backward pass."""

from __future__ import annotations

from typing import Callable

import torch

from .._options import check_positive_int, options
from ..forward.base import FlatMap
from ..info import BackwardInfo, SolveInfo
from ._adjoint import attach_adjoint
from .base import BackwardMode
from .onestep import OneStep

__all__ = ["Neumann"]


@options
class Neumann(BackwardMode):
    """g = sum_{i<terms} (J^T)^i v: the first ``terms`` terms of the Neumann series of (I - J^T)^-1.

    ``Neumann(terms=1)`` is :class:`OneStep` (and is run as it, so it supports double backward). Larger
    k costs k - 1 vector-Jacobian products per backward pass and approaches the exact implicit gradient
    when the spectral radius of J is below one.

    Attributes:
        terms: k >= 1.

    Raises:
        TypeError: if ``terms`` is not an int, or an unknown option is passed.
        ValueError: if ``terms`` < 1.

    Examples:
        >>> import torch, solvers
        >>> w = torch.tensor(0.5, requires_grad=True)
        >>> z, _ = solvers.fixed_point(lambda z: w * z + 1, torch.zeros(1, 1), backward=solvers.Neumann(terms=3),
        ...                            tol=1e-8)
        >>> z.sum().backward(); w.grad.item()  # z* (1 + w + w^2) = 3.5; the exact 1 / (1 - w)^2 = 4
        3.5
    """

    terms: int = 5

    name = "neumann"

    def __post_init__(self) -> None:
        check_positive_int("Neumann terms", self.terms)

    def attach(self, f: FlatMap, z_star: torch.Tensor, info: SolveInfo, on_fail: str) -> torch.Tensor:
        if self.terms == 1:
            return OneStep().attach(f, z_star, info, on_fail)
        terms = self.terms

        def adjoint(vjp: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor) -> tuple[torch.Tensor, BackwardInfo]:
            with torch.no_grad():
                g = v
                term = v
                for _ in range(terms - 1):
                    term = vjp(term)
                    g = g + term
            stats = BackwardInfo(
                method=f"neumann({terms})", steps=terms, nfe=terms - 1,
                residual=torch.linalg.vector_norm(term, dim=1),  # size of the last term kept
                converged=torch.ones(v.shape[0], dtype=torch.bool, device=v.device),
            )
            return g, stats

        return attach_adjoint(f, z_star, adjoint, info)
