"""Batched restarted GMRES for the adjoint system (I - J^T) g = v, one Krylov space per sample."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from ._options import check_positive_int, options
from .forward._progress import Progress
from .info import SolveInfo

__all__ = ["GMRES"]


@options
class GMRES:
    """Restarted GMRES for linear fixed points ``g = A(g) + v`` with ``A`` linear (here ``J^T``).

    Each sample has its own Krylov space and least-squares problem; a restart cycle ends when every
    sample's estimated residual meets the tolerance, and the true residual is then checked with one
    more product. Used as ``solvers.Implicit(solver="gmres")``.

    Attributes:
        restart: Krylov dimension per cycle.

    Raises:
        TypeError: if ``restart`` is not an int, or an unknown option is passed.
        ValueError: if ``restart`` < 1.

    Examples:
        >>> import torch, solvers
        >>> a = torch.tensor([[0.5, 0.2], [0.0, -0.3]])
        >>> g, info = solvers.GMRES().solve_linear(lambda g: g @ a, torch.ones(2, 2), tol=1e-6, max_iter=20)
        >>> g  # each row solves g = g @ a + 1
        tensor([[2.0000, 1.0769],
                [2.0000, 1.0769]])
        >>> info.solver, bool(info.converged.all())
        ('gmres', True)

        As the adjoint solver of implicit gradients:

        >>> backward = solvers.Implicit(solver=solvers.GMRES(restart=10), tol=1e-8)
    """

    restart: int = 20

    name = "gmres"

    def __post_init__(self) -> None:
        check_positive_int("GMRES restart", self.restart)

    def solve_linear(self, apply_a: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor,
                     tol: Optional[float], max_iter: int, stop_mode: str = "abs",
                     nonfinite: str = "raise") -> tuple[torch.Tensor, SolveInfo]:
        """Solve ``g = apply_a(g) + v`` per sample, with at most ``max_iter`` products by ``apply_a``.

        The residual reported is that of the fixed-point form, ``||apply_a(g) + v - g||`` ("abs"), or it
        over ``||apply_a(g) + v||`` ("rel"), so it is comparable with the other adjoint solvers.

        Args:
            apply_a: the linear map ``A`` on flat batches [B, D] -> [B, D] (rows must not interact).
            v: right-hand side [B, D]; also the starting guess.
            tol: per-sample tolerance on the residual, or None to use all ``max_iter`` products.
            max_iter: most products by ``apply_a`` (the residual checks between cycles included).
            stop_mode: "abs" or "rel" (see above).
            nonfinite: "raise" a :class:`~solvers.NonFiniteError` on NaN/Inf, or "best" to keep each failing
                sample's best finite iterate, flagged not converged.

        Returns:
            ``(g, info)``: the per-sample best solution [B, D] and a :class:`~solvers.SolveInfo` (``nfe``:
            products by ``apply_a``; ``steps`` and ``trace``: one entry per true-residual check).
        """
        batch, dim = v.shape
        dtype = torch.float64 if v.dtype == torch.float64 else v.dtype
        progress = Progress(v, tol, stop_mode, nonfinite)
        g = v.clone()
        nfe = 0
        while nfe < max_iter:
            ag = apply_a(g)
            nfe += 1
            h_g = ag + v
            r = h_g - g  # = v - (I - A) g
            res = torch.linalg.vector_norm(r, dim=1)
            if stop_mode == "rel":
                res = res / (torch.linalg.vector_norm(h_g, dim=1) + 1e-9)
            if not progress.record(g, res) or nfe >= max_iter:
                break
            cycle = min(self.restart, max_iter - nfe)
            target = None
            if tol is not None:
                scale = torch.linalg.vector_norm(h_g, dim=1) + 1e-9 if stop_mode == "rel" else torch.ones_like(res)
                target = tol * scale
            g_delta, used = self._cycle(apply_a, r, cycle, target, dtype)
            nfe += used
            g = torch.where(progress.active.unsqueeze(1), g + g_delta, g)
        return progress.finish(self.name, nfe)

    @staticmethod
    def _cycle(apply_a: Callable[[torch.Tensor], torch.Tensor], r0: torch.Tensor, cycle: int,
               target: Optional[torch.Tensor], dtype: torch.dtype) -> tuple[torch.Tensor, int]:
        batch, dim = r0.shape
        beta = torch.linalg.vector_norm(r0, dim=1)
        safe_beta = torch.where(beta > 0, beta, torch.ones_like(beta))
        basis = [r0 / safe_beta.unsqueeze(1)]
        hess = torch.zeros(batch, cycle + 1, cycle, dtype=torch.float64, device=r0.device)
        rhs = torch.zeros(batch, cycle + 1, dtype=torch.float64, device=r0.device)
        rhs[:, 0] = beta.to(torch.float64)
        used = 0
        y = None
        for j in range(cycle):
            w = basis[j] - apply_a(basis[j])  # (I - A) q_j
            used += 1
            q = torch.stack(basis, dim=1)  # [B, j+1, D]
            # Classical Gram-Schmidt applied twice: as stable as modified GS, but batched matmuls.
            # (Products written as [B, 1, D] x [B, D, j+1]: the fast orientation of a batched mat-vec on CPU.)
            coeff = torch.bmm(w.unsqueeze(1), q.transpose(1, 2))  # [B, 1, j+1]
            w = torch.baddbmm(w.unsqueeze(1), coeff, q, alpha=-1.0).squeeze(1)
            coeff2 = torch.bmm(w.unsqueeze(1), q.transpose(1, 2))
            w = torch.baddbmm(w.unsqueeze(1), coeff2, q, alpha=-1.0).squeeze(1)
            coeff = (coeff + coeff2).squeeze(1)
            norm = torch.linalg.vector_norm(w, dim=1)
            hess[:, : j + 1, j] = coeff.to(torch.float64)
            hess[:, j + 1, j] = norm.to(torch.float64)
            safe = torch.where(norm > 0, norm, torch.ones_like(norm))
            basis.append(w / safe.unsqueeze(1))
            h = hess[:, : j + 2, : j + 1]
            y = _least_squares(h, rhs[:, : j + 2])
            est = torch.linalg.vector_norm(rhs[:, : j + 2] - torch.bmm(h, y.unsqueeze(2)).squeeze(2), dim=1)
            if target is not None and bool((est <= 0.5 * target.to(torch.float64)).all()):
                break
        assert y is not None  # cycle >= 1: the loop ran at least once
        q = torch.stack(basis[: y.shape[1]], dim=1)
        delta = torch.bmm(y.to(q.dtype).unsqueeze(1), q).squeeze(1)
        return delta, used


def _least_squares(h: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """min ||rhs - h y|| per sample via a pseudo-inverse (robust to happy breakdown / rank loss)."""
    return torch.bmm(torch.linalg.pinv(h), rhs.unsqueeze(2)).squeeze(2)
