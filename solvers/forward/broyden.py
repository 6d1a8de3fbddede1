"""Limited-memory "good" Broyden method for z = f(z)."""

from __future__ import annotations

from typing import Optional

import torch

from .._options import check_positive_int, options
from ..info import SolveInfo
from ._progress import Progress, residual_norm, write_slot
from .base import FlatMap, ForwardSolver

__all__ = ["Broyden"]


@options
class Broyden(ForwardSolver):
    """Good Broyden's method on ``g(z) = f(z) - z`` with a low-rank inverse Jacobian.

    The inverse Jacobian estimate is ``H = -I + U^T V`` with at most ``memory`` rank-one terms (the
    oldest is overwritten when full, as in locuslab/deq and torchdeq). Each step moves to
    ``z - alpha H g(z)``; the first step is therefore plain iteration. Updates whose denominator is
    negligible relative to the step are skipped per sample, which keeps float32 runs finite.

    Args:
        memory: most rank-one updates kept.
        line_search: backtrack (halve the step, at most ``max_backtracks`` times) for samples whose
            residual did not decrease; each backtrack costs one batched evaluation of ``f``.
        max_backtracks: see ``line_search``.

    Examples:
        >>> import torch, solvers
        >>> z, info = solvers.fixed_point(torch.cos, torch.zeros(1, 1), forward="broyden",
        ...                               backward="onestep", tol=1e-8, max_iter=50)
        >>> info.converged.item()
        True
    """

    memory: int = 30
    line_search: bool = False
    max_backtracks: int = 3

    name = "broyden"

    def __post_init__(self) -> None:
        check_positive_int("Broyden memory", self.memory)
        check_positive_int("Broyden max_backtracks", self.max_backtracks, minimum=0)
        if not isinstance(self.line_search, bool):
            raise TypeError(f"Broyden line_search must be True or False; got {self.line_search!r}")

    def solve(self, f: FlatMap, z0: torch.Tensor, tol: Optional[float], max_iter: int,
              stop_mode: str = "abs", nonfinite: str = "raise") -> tuple[torch.Tensor, SolveInfo]:
        batch, dim = z0.shape
        m = self.memory
        progress = Progress(z0, tol, stop_mode, nonfinite)
        z = z0
        fz = f(z)
        nfe = 1
        g = fz - z
        res = residual_norm(z, fz, stop_mode)
        if not progress.record(z, res) or max_iter == 1:
            return progress.finish(self.name, nfe)
        us = z0.new_zeros(batch, m, dim)
        vs = z0.new_zeros(batch, m, dim)
        tiny = torch.finfo(z0.dtype).eps
        n_stored = 0
        while nfe < max_iter:
            active = progress.active.unsqueeze(1)
            n = min(n_stored, m)
            # Newton-like step -H g with H = -I + U^T V.
            step = g - _apply_low_rank(us[:, :n], vs[:, :n], g) if n else g
            step = torch.where(active, step, torch.zeros_like(step))
            z_new = z + step
            f_new = f(z_new)
            nfe += 1
            res_new = residual_norm(z_new, f_new, stop_mode)
            if self.line_search:
                z_new, f_new, res_new, nfe = self._backtrack(f, z, step, res, z_new, f_new, res_new,
                                                             stop_mode, nfe, max_iter)
            g_new = f_new - z_new
            going = progress.record(z_new, res_new)
            if not going or nfe >= max_iter:
                break
            dz = z_new - z
            dg = g_new - g
            # Good Broyden update of the inverse: H += (dz - H dg) (dz^T H) / (dz^T H dg).
            h_dg = -dg + _apply_low_rank(us[:, :n], vs[:, :n], dg) if n else -dg
            dz_h = -dz + _apply_low_rank_t(us[:, :n], vs[:, :n], dz) if n else -dz
            denom = (dz_h * dg).sum(dim=1)
            scale = torch.linalg.vector_norm(dz_h, dim=1) * torch.linalg.vector_norm(dg, dim=1)
            usable = progress.active & torch.isfinite(denom) & (denom.abs() > tiny * scale) & (scale > 0)
            safe = torch.where(usable, denom, torch.ones_like(denom))
            u = torch.where(usable.unsqueeze(1), (dz - h_dg) / safe.unsqueeze(1), torch.zeros_like(dz))
            v = torch.where(usable.unsqueeze(1), dz_h, torch.zeros_like(dz_h))
            slot = n_stored % m
            us = write_slot(us, slot, u)
            vs = write_slot(vs, slot, v)
            n_stored += 1
            keep = progress.active.unsqueeze(1)
            z = torch.where(keep, z_new, z)
            g = torch.where(keep, g_new, g)
            res = torch.where(progress.active, res_new, res)
        return progress.finish(self.name, nfe)

    def _backtrack(self, f: FlatMap, z, step, res, z_new, f_new, res_new, stop_mode, nfe, max_iter):
        alpha = 1.0
        for _ in range(self.max_backtracks):
            # Armijo-like sufficient decrease on the residual norm, per sample.
            bad = torch.isfinite(res) & ~(res_new <= (1.0 - 1e-4 * alpha) * res)
            if nfe >= max_iter or not bool(bad.any()):
                break
            alpha *= 0.5
            z_try = z + alpha * step
            f_try = f(z_try)
            nfe += 1
            res_try = residual_norm(z_try, f_try, stop_mode)
            better = bad & (res_try < res_new)
            pick = better.unsqueeze(1)
            z_new = torch.where(pick, z_try, z_new)
            f_new = torch.where(pick, f_try, f_new)
            res_new = torch.where(better, res_try, res_new)
        return z_new, f_new, res_new, nfe


def _apply_low_rank(us: torch.Tensor, vs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """U^T (V x) for stacks us, vs of shape [B, n, D] and x [B, D]."""
    coeff = torch.bmm(vs, x.unsqueeze(2))  # [B, n, 1]
    return torch.bmm(us.transpose(1, 2), coeff).squeeze(2)


def _apply_low_rank_t(us: torch.Tensor, vs: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(x^T U^T V)^T = V^T (U x)."""
    coeff = torch.bmm(us, x.unsqueeze(2))  # [B, n, 1]
    return torch.bmm(vs.transpose(1, 2), coeff).squeeze(2)
