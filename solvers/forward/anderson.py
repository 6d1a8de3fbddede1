"""Anderson acceleration (type II, Walker & Ni 2011) with ridge regularisation and damping."""

from __future__ import annotations

from typing import Optional

import torch

from .._options import check_positive_int, options
from ..info import SolveInfo
from ._progress import Progress, residual_norm, write_slot
from .base import FlatMap, ForwardSolver

__all__ = ["Anderson"]


@options
class Anderson(ForwardSolver):
    """Anderson acceleration in Walker & Ni's difference form.

    At step k with residual ``g_k = f(x_k) - x_k`` and the last ``memory`` differences
    ``dX, dG`` of iterates and residuals, it solves the ridge least-squares problem
    ``min_gamma ||g_k - dG gamma||^2 + lam ||gamma||^2`` and steps to
    ``x_{k+1} = x_k + damping g_k - (dX + damping dG) gamma``.

    ``ridge`` is relative to the largest diagonal entry of ``dG^T dG`` so that the regularisation does not
    depend on the scale of the state. The small system is solved in float64; where it is still singular
    the step falls back to damped iteration for that sample instead of raising.

    Args:
        memory: number of past differences kept (m).
        ridge: relative Tikhonov regularisation of the least-squares system.
        damping: mixing parameter beta in (0, 1].

    Examples:
        >>> import torch, solvers
        >>> z, info = solvers.fixed_point(torch.cos, torch.zeros(1, 1), forward="anderson",
        ...                               backward="onestep", tol=1e-8, max_iter=50)
        >>> info.nfe < 15
        True
    """

    memory: int = 5
    ridge: float = 1e-8
    damping: float = 1.0

    name = "anderson"

    def __post_init__(self) -> None:
        check_positive_int("Anderson memory", self.memory)
        if not float(self.ridge) >= 0.0:
            raise ValueError(f"Anderson ridge must be >= 0; got {self.ridge}")
        if not 0.0 < float(self.damping) <= 1.0:
            raise ValueError(f"Anderson damping must be in (0, 1]; got {self.damping}")

    def solve(self, f: FlatMap, z0: torch.Tensor, tol: Optional[float], max_iter: int,
              stop_mode: str = "abs", nonfinite: str = "raise") -> tuple[torch.Tensor, SolveInfo]:
        batch, dim = z0.shape
        m, beta = self.memory, float(self.damping)
        progress = Progress(z0, tol, stop_mode, nonfinite)
        x = z0
        fx = f(x)
        nfe = 1
        g = fx - x
        if not progress.record(x, residual_norm(x, fx, stop_mode)) or max_iter == 1:
            return progress.finish(self.name, nfe)
        d_x = z0.new_zeros(batch, m, dim)
        d_g = z0.new_zeros(batch, m, dim)
        gram = torch.zeros(batch, m, m, dtype=torch.float64, device=z0.device)
        x_prev, g_prev = x, g
        x = x + beta * g
        for k in range(1, max_iter):
            fx = f(x)
            nfe += 1
            g = fx - x
            if not progress.record(x, residual_norm(x, fx, stop_mode)):
                break
            slot = (k - 1) % m
            new_dg = g - g_prev
            d_x = write_slot(d_x, slot, x - x_prev)
            d_g = write_slot(d_g, slot, new_dg)
            # Only the row and column of the replaced slot change in dG dG^T.
            row = torch.bmm(d_g, new_dg.unsqueeze(2)).squeeze(2).to(torch.float64)
            gram = write_slot(gram, slot, row)
            gram = _write_column(gram, slot, row)
            x_prev, g_prev = x, g
            n = min(k, m)
            gamma = self._mix(gram[:, :n, :n], torch.bmm(d_g[:, :n], g.unsqueeze(2)).squeeze(2))
            gamma = gamma.to(x.dtype).unsqueeze(1)
            step = torch.bmm(gamma, d_x[:, :n] + beta * d_g[:, :n]).squeeze(1)
            x_new = x + beta * g - step
            x = torch.where(progress.active.unsqueeze(1), x_new, x)
        return progress.finish(self.name, nfe)

    def _mix(self, gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        """Solve (G + lam I) gamma = rhs per sample in float64; singular rows give gamma = 0."""
        n = gram.shape[-1]
        diag_max = gram.diagonal(dim1=1, dim2=2).amax(dim=1).clamp_min(0.0)
        lam = self.ridge * diag_max + torch.finfo(torch.float64).tiny
        eye = torch.eye(n, dtype=gram.dtype, device=gram.device)
        system = gram + lam[:, None, None] * eye
        gamma, status = torch.linalg.solve_ex(system, rhs.to(torch.float64))
        ok = (status == 0) & torch.isfinite(gamma).all(dim=1)
        return torch.where(ok.unsqueeze(1), gamma, torch.zeros_like(gamma))


def _write_column(gram: torch.Tensor, slot: int, row: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and (gram.requires_grad or row.requires_grad):
        idx = torch.tensor([slot], device=gram.device)
        return gram.index_copy(2, idx, row.unsqueeze(2))
    gram[:, :, slot] = row
    return gram
