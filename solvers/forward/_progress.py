"""Per-sample bookkeeping shared by the forward solvers: residuals, best iterate, stopping, traces."""

from __future__ import annotations

from typing import Optional

import torch

from ..errors import NonFiniteError
from ..info import SolveInfo

__all__ = ["Progress", "residual_norm", "write_slot"]

# torchdeq's relative residual divides by ||f(z)|| + 1e-9; we keep the same convention.
_REL_EPS = 1e-9


def residual_norm(z: torch.Tensor, fz: torch.Tensor, stop_mode: str) -> torch.Tensor:
    """Per-sample ``||f(z) - z||`` ("abs") or that over ``||f(z)||`` ("rel"); shape [B]."""
    res = torch.linalg.vector_norm(fz - z, dim=1)
    if stop_mode == "rel":
        res = res / (torch.linalg.vector_norm(fz, dim=1) + _REL_EPS)
    return res


def write_slot(buffer: torch.Tensor, index: int, value: torch.Tensor) -> torch.Tensor:
    """Write ``value`` into ``buffer[:, index]``: in place without autograd, out of place under it.

    In-place writes into history buffers would invalidate tensors autograd saved when the solver is
    unrolled (backward="unrolled"); out of place they cost one copy of the buffer.
    """
    if torch.is_grad_enabled() and (buffer.requires_grad or value.requires_grad):
        idx = torch.tensor([index], device=buffer.device)
        return buffer.index_copy(1, idx, value.unsqueeze(1))
    buffer[:, index] = value
    return buffer


class Progress:
    """Tracks per-sample residuals, the best iterate, convergence and non-finite failures.

    Args:
        z0: the initial flat state [B, D], used as the fallback best iterate.
        tol: tolerance, or None to never stop early.
        stop_mode: "abs" or "rel".
        nonfinite: "raise" to stop with :class:`NonFiniteError`, "best" to freeze the sample at its
            best finite iterate and flag it not converged.
        keep: "best" returns each sample's lowest-residual candidate, "last" its latest finite one.
    """

    def __init__(self, z0: torch.Tensor, tol: Optional[float], stop_mode: str, nonfinite: str,
                 keep: str = "best") -> None:
        batch = z0.shape[0]
        self.tol = tol
        self.stop_mode = stop_mode
        self.nonfinite_mode = nonfinite
        self.keep = keep
        self.best = z0
        self.best_res = torch.full((batch,), float("inf"), dtype=z0.dtype, device=z0.device)
        self.active = torch.ones(batch, dtype=torch.bool, device=z0.device)
        self.failed = torch.zeros(batch, dtype=torch.bool, device=z0.device)
        self.trace: list[torch.Tensor] = []
        self.steps = 0

    def record(self, candidate: torch.Tensor, res: torch.Tensor) -> bool:
        """Record one step; returns True while some sample still needs iterating.

        Args:
            candidate: the state to return for each sample if this step is its best [B, D].
            res: the residual belonging to ``candidate`` [B].
        """
        self.steps += 1
        res = res.detach()
        self.trace.append(res)
        finite = torch.isfinite(res)
        if self.keep == "last":
            take = self.active & finite
        else:
            take = self.active & (res < self.best_res)
        self.best = torch.where(take.unsqueeze(1), candidate, self.best)
        self.best_res = torch.where(take, res, self.best_res)
        newly_bad = self.active & ~finite
        still = self.active & finite
        if self.tol is not None:
            still = still & ~(res <= self.tol)
        # One host sync per step: both flags in one transfer.
        any_bad, any_active = torch.stack([newly_bad.any(), still.any()]).tolist()
        if any_bad:
            if self.nonfinite_mode == "raise":
                bad = torch.nonzero(newly_bad).flatten().tolist()
                raise NonFiniteError(
                    f"the map returned NaN/Inf at step {self.steps} for batch sample(s) {bad[:10]}"
                    f"{' ...' if len(bad) > 10 else ''}; lower the step size (damping), check the map for "
                    "overflow, or pass nonfinite='best' to return the best finite iterate flagged not converged"
                )
            self.failed = self.failed | newly_bad
        self.active = still
        return bool(any_active)

    def finish(self, solver: str, nfe: int) -> tuple[torch.Tensor, SolveInfo]:
        """Return the chosen iterate per sample and the statistics."""
        best_res = self.best_res
        if self.tol is None:
            converged = ~self.failed
        else:
            converged = (best_res <= self.tol) & ~self.failed
        trace = torch.stack(self.trace) if self.trace else best_res.new_zeros((0, best_res.shape[0]))
        info = SolveInfo(
            solver=solver, nfe=nfe, steps=self.steps, residual=best_res, converged=converged,
            trace=trace, stop_mode=self.stop_mode, tol=self.tol, nonfinite=self.failed,
        )
        return self.best, info
