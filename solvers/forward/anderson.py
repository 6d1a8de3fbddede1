"""Anderson acceleration (type II, Walker & Ni 2011) with ridge regularisation and damping."""

from __future__ import annotations

import functools
import math
from typing import Optional

import numpy as np
import torch

from .._options import check_positive_int, check_real, options
from ..info import SolveInfo
from ._progress import HOST_DTYPES, Progress, on_host, residual_from_step, write_slot
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

    Attributes:
        memory: number of past differences kept (m).
        ridge: relative Tikhonov regularisation of the least-squares system.
        damping: mixing parameter beta in (0, 1].

    Raises:
        TypeError: if an option has the wrong type (``memory`` not an int, ``ridge`` or ``damping`` not a
            number), or an unknown option is passed.
        ValueError: if ``memory`` < 1, ``ridge`` is negative or infinite, or ``damping`` is outside (0, 1].

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
        check_real("Anderson ridge", self.ridge, 0.0, math.inf)
        check_real("Anderson damping", self.damping, 0.0, 1.0, low_open=True)

    def solve(self, f: FlatMap, z0: torch.Tensor, tol: Optional[float], max_iter: int,
              stop_mode: str = "abs", nonfinite: str = "raise", snapshots: tuple[int, ...] = ()
              ) -> tuple[torch.Tensor, SolveInfo]:
        batch, dim = z0.shape
        m, beta = self.memory, float(self.damping)
        progress = Progress(z0, tol, stop_mode, nonfinite, snapshots=snapshots, f=f)
        x = z0
        fx = f(x)
        nfe = 1
        g = fx - x
        if not progress.record(x, residual_from_step(g, fx, stop_mode)) or max_iter == 1:
            return progress.finish(self.name, nfe)
        # History: residual differences dG and the step directions dX + beta dG (the only combination
        # the update uses), both [B, m, D]; the Gram matrix dG dG^T is kept up to date in float64.
        # Without autograd the history is written in place; under it (backward="unrolled") out of place.
        inplace = not torch.is_grad_enabled()
        d_g = z0.new_zeros(batch, m, dim)
        d_mix = z0.new_zeros(batch, m, dim)
        gram = torch.zeros(batch, m, m, dtype=torch.float64, device=z0.device)
        x_prev, g_prev, fx_prev = x, g, fx
        x = fx if beta == 1.0 else x + beta * g
        # Without autograd, g and the new dG are written into one of two [B, 2, D] buffers (alternating,
        # so the previous g survives) that feed the batched product directly.
        pairs = (z0.new_empty(batch, 2, dim), z0.new_empty(batch, 2, dim)) if inplace else None
        # On the CPU without autograd the m x m systems are kept and solved in NumPy: a dozen tiny torch
        # kernels (and linalg.solve_ex's copies) per step cost more than f itself at d = 256
        # (docs/benchmarks/notebook.md, (e)).
        host_small_system = on_host(z0)
        for k in range(1, max_iter):
            fx = f(x)
            nfe += 1
            if pairs is not None:
                pair = pairs[k % 2]
                g = torch.sub(fx, x, out=pair[:, 1])
            else:
                g = fx - x
            if not progress.record(x, residual_from_step(g, fx, stop_mode)):
                break
            slot = (k - 1) % m
            n = min(k, m)
            if inplace:
                new_dg = torch.sub(g, g_prev, out=pair[:, 0])
                d_g[:, slot] = new_dg
                if beta == 1.0:  # dX + dG = d f(x)
                    torch.sub(fx, fx_prev, out=d_mix[:, slot])
                else:
                    torch.add(x - x_prev, new_dg, alpha=beta, out=d_mix[:, slot])
            else:
                new_dg = g - g_prev
                d_g = write_slot(d_g, slot, new_dg)
                d_mix = write_slot(d_mix, slot, fx - fx_prev if beta == 1.0 else (x - x_prev) + beta * new_dg)
                pair = torch.stack((new_dg, g), dim=1)
            # One batched product gives the new Gram row (dG_j . new dG) and the right-hand side (dG_j . g).
            # ([B, 2, D] x [B, D, n] is the fast orientation of a batched mat-vec on CPU.)
            prods = torch.bmm(pair, d_g[:, :n].transpose(1, 2))
            x_prev, g_prev, fx_prev = x, g, fx
            gamma = self._mix_on_host(gram, prods, slot, n) if host_small_system else None
            if gamma is None:
                prods = prods.to(torch.float64)
                gram = _write_row_col(gram, slot, prods[:, 0], n)
                gamma = self._mix(gram[:, :n, :n], prods[:, 1:2].transpose(1, 2), inplace)  # [B, n, 1]
            # x_new = x + beta g - (dX + beta dG) gamma, as one batched multiply-add.
            base = fx if beta == 1.0 else x + beta * g
            x_new = torch.baddbmm(base.unsqueeze(1), gamma.transpose(1, 2).to(x.dtype), d_mix[:, :n],
                                  alpha=-1.0).squeeze(1)
            x = progress.freeze(x_new, x)
            kept = progress.compact()
            if kept is not None:  # the samples that stopped leave the batch
                x, x_prev, g_prev, fx_prev = (t.index_select(0, kept) for t in (x, x_prev, g_prev, fx_prev))
                d_g, d_mix, gram = (t.index_select(0, kept) for t in (d_g, d_mix, gram))
                if pairs is not None:
                    pairs = (x.new_empty(x.shape[0], 2, dim), x.new_empty(x.shape[0], 2, dim))
        return progress.finish(self.name, nfe)

    def _mix_on_host(self, gram: torch.Tensor, prods: torch.Tensor, slot: int, n: int) -> Optional[torch.Tensor]:
        """:meth:`_mix` in NumPy for CPU tensors without autograd: writes the new Gram row into ``gram``
        (a float64 CPU tensor, through a shared NumPy view) and returns gamma [B, n, 1] in the state's dtype.

        ``prods`` [B, 2, n]: the new Gram row and the right-hand side. Returns None where NumPy finds a
        system exactly singular (only possible with ``ridge = 0``): the caller then takes the torch path,
        which gives those samples gamma = 0.
        """
        host = prods.numpy().astype(np.float64)
        g_np = gram.numpy()
        g_np[:, slot, :n] = host[:, 0]
        g_np[:, :n, slot] = host[:, 0]
        system = g_np[:, :n, :n]
        tiny = np.finfo(np.float64).tiny
        if self.ridge > 0:
            shift = self.ridge * (np.einsum("bii->bi", system).max(axis=1) + tiny / self.ridge)
        else:
            shift = np.full(system.shape[0], tiny)
        system = system + shift[:, None, None] * np.eye(n)
        try:
            gamma = np.linalg.solve(system, host[:, 1, :, None])
        except np.linalg.LinAlgError:
            # the torch path writes the same row again and gives the singular samples gamma = 0
            return None
        gamma[~np.isfinite(gamma.sum(axis=1))[:, 0]] = 0.0
        return torch.from_numpy(gamma.astype(HOST_DTYPES[prods.dtype], copy=False))

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _eye(n: int, device: torch.device) -> torch.Tensor:
        return torch.eye(n, dtype=torch.float64, device=device)

    def _mix(self, gram: torch.Tensor, rhs: torch.Tensor, inplace: bool) -> torch.Tensor:
        """Solve (G + lam I) gamma = rhs [B, n, 1] per sample in float64; singular rows give gamma = 0.

        ``lam = ridge * max_i G_ii + tiny`` per sample; a row of gamma that is not finite is set to zero
        (a singular system gives Inf/NaN).
        """
        eye = self._eye(gram.shape[-1], gram.device)
        # lam = ridge * max_i G_ii + tiny (tiny keeps an all-zero system invertible, which matters for
        # autograd through converged steps under backward="unrolled"), in two kernels.
        tiny = torch.finfo(torch.float64).tiny
        if self.ridge > 0:
            shift = gram.diagonal(dim1=1, dim2=2).amax(dim=1) + tiny / self.ridge
            system = torch.addcmul(gram, shift.view(-1, 1, 1), eye, value=self.ridge)
        else:
            system = gram + tiny * eye
        # A matrix right-hand side keeps gamma row-major (a vector one comes back column-major, which
        # sends the following batched product down a slow path on CPU).
        gamma, _ = torch.linalg.solve_ex(system, rhs)
        total = gamma.sum(dim=1, keepdim=True)
        bad = total - total != 0  # x - x is NaN exactly when x is NaN or +-Inf
        if inplace:
            out: torch.Tensor = gamma.masked_fill_(bad, 0.0)
        else:
            out = torch.where(bad, torch.zeros_like(gamma), gamma)
        return out


def _write_row_col(gram: torch.Tensor, slot: int, row: torch.Tensor, n: int) -> torch.Tensor:
    """Set row and column ``slot`` of the symmetric [B, m, m] Gram matrix to ``row`` [B, n] (padded with 0)."""
    if torch.is_grad_enabled() and (gram.requires_grad or row.requires_grad):
        m = gram.shape[1]
        full = torch.nn.functional.pad(row, (0, m - n)) if n < m else row
        gram = write_slot(gram, slot, full)
        idx = torch.tensor([slot], device=gram.device)
        return gram.index_copy(2, idx, full.unsqueeze(2))
    gram[:, slot, :n] = row
    gram[:, :n, slot] = row
    return gram
