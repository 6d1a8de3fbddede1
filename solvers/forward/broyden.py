"""Limited-memory "good" Broyden method for z = f(z)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .._options import check_positive_int, options
from ..info import SolveInfo
from ._progress import Progress, on_host, residual_from_step, residual_norm, write_slot
from .base import FlatMap, ForwardSolver

__all__ = ["Broyden"]

# A residual this many times the previous one means the step diverged (see the restart in solve()).
_BLOWUP = 1e4


@options
class Broyden(ForwardSolver):
    """Good Broyden's method on ``g(z) = f(z) - z`` with a low-rank inverse Jacobian.

    The inverse Jacobian estimate is ``H = -I + U^T V`` with at most ``memory`` rank-one terms (the
    oldest is overwritten when full, as in locuslab/deq and torchdeq). Each step moves to
    ``z - alpha H g(z)``; the first step is therefore plain iteration. Updates whose denominator is
    negligible relative to the step are skipped per sample, which keeps float32 runs finite. A step that
    blows up (NaN/Inf or a residual 1e4 times larger) is undone and that sample restarts with a plain step
    from its last iterate; if that step blows up too, the NaN/Inf is the map's and ``nonfinite`` applies.

    Attributes:
        memory: most rank-one updates kept; None (default) keeps all of them, i.e. ``max_iter``, as
            torchdeq does. A bound overwrites the oldest update, which costs convergence on hard problems
            (on a random slot-attention step, memory 30 left 28 of 32 samples unconverged after 100
            evaluations where full memory converged 31).
        line_search: backtrack (halve the step, at most ``max_backtracks`` times) for samples whose
            residual did not decrease; each backtrack costs one batched evaluation of ``f``.
        max_backtracks: see ``line_search``.

    Raises:
        TypeError: if ``memory`` is neither None nor an int, ``max_backtracks`` is not an int,
            ``line_search`` is not a bool, or an unknown option is passed.
        ValueError: if ``memory`` < 1 or ``max_backtracks`` < 0.

    Examples:
        >>> import torch, solvers
        >>> z, info = solvers.fixed_point(torch.cos, torch.zeros(1, 1), forward="broyden",
        ...                               backward="onestep", tol=1e-8, max_iter=50)
        >>> info.converged.item()
        True
    """

    memory: Optional[int] = None
    line_search: bool = False
    max_backtracks: int = 3

    name = "broyden"

    def __post_init__(self) -> None:
        if self.memory is not None:
            check_positive_int("Broyden memory", self.memory)
        check_positive_int("Broyden max_backtracks", self.max_backtracks, minimum=0)
        if not isinstance(self.line_search, bool):
            raise TypeError(f"Broyden line_search must be True or False; got {self.line_search!r}")

    def solve(self, f: FlatMap, z0: torch.Tensor, tol: Optional[float], max_iter: int,
              stop_mode: str = "abs", nonfinite: str = "raise", snapshots: tuple[int, ...] = ()
              ) -> tuple[torch.Tensor, SolveInfo]:
        batch, dim = z0.shape
        m = self.memory if self.memory is not None else max(1, max_iter - 1)
        progress = Progress(z0, tol, stop_mode, nonfinite, snapshots=snapshots, f=f)
        z = z0
        fz = f(z)
        nfe = 1
        g = fz - z
        res = residual_from_step(g, fz, stop_mode)
        if not progress.record(z, res) or max_iter == 1:
            return progress.finish(self.name, nfe)
        us = z0.new_zeros(batch, m, dim)
        vs = z0.new_zeros(batch, m, dim)
        tiny = torch.finfo(z0.dtype).eps
        # On the CPU without autograd the per-step tests on [B] vectors are taken in NumPy, on the same
        # memory: each torch kernel they replace costs a few microseconds, as much as the test's arithmetic.
        host = on_host(z0)
        n_stored = 0
        just_restarted = None
        step = g  # Newton-like step -H g with H = -I + U^T V; the first step is plain iteration.
        while nfe < max_iter:
            z_new = z + step
            f_new = f(z_new)
            nfe += 1
            if self.line_search:
                res_new = residual_norm(z_new, f_new, stop_mode)
                z_new, f_new, res_new, nfe = self._backtrack(f, z, step, res, z_new, f_new, res_new,
                                                             stop_mode, nfe, max_iter, progress.active)
                g_new = f_new - z_new
            else:
                g_new = f_new - z_new
                res_new = residual_from_step(g_new, f_new, stop_mode)
            restarted = None
            if n_stored and _blew_up(res_new, res, host):
                # A step that blew up (NaN/Inf, or the residual grew by orders of magnitude: the low-rank
                # inverse has gone bad, typically in float32) is undone for those samples and their
                # memory is cleared, so they restart from their last iterate with a plain step. A sample
                # whose restart step blows up again is the map's doing: it goes to the non-finite policy.
                restarted = ~(torch.isfinite(res_new) & (res_new <= _BLOWUP * res))
                if just_restarted is not None:
                    restarted = restarted & ~just_restarted
                back = restarted.unsqueeze(1)
                z_new, g_new = torch.where(back, z, z_new), torch.where(back, g, g_new)
                res_new = torch.where(restarted, res, res_new)
                us, vs = torch.where(back.unsqueeze(2), 0.0, us), torch.where(back.unsqueeze(2), 0.0, vs)
            just_restarted = restarted
            going = progress.record(z_new, res_new)
            if not going or nfe >= max_iter:
                break
            dz = z_new - z
            dg = g_new - g
            n = min(n_stored, m)
            slot = n_stored % m
            # Good Broyden update of the inverse: H += (dz - H dg) (dz^T H) / (dz^T H dg). The step just
            # taken was -H g, so H dg = H g_new + step: one product with H (for H g_new, which the next
            # step needs anyway) and one with H^T (for dz^T H) per iteration.
            if n:
                u_n, v_n = us[:, :n], vs[:, :n]
                coeff = torch.bmm(g_new.unsqueeze(1), v_n.transpose(1, 2))  # [B, 1, n]
                h_g = torch.bmm(coeff, u_n).squeeze(1) - g_new  # H g_new
                dz_h = torch.bmm(torch.bmm(dz.unsqueeze(1), u_n.transpose(1, 2)), v_n).squeeze(1) - dz
            else:
                h_g, dz_h = -g_new, -dz
            u_raw = dz - h_g - step  # dz - H dg
            if n_stored >= m:  # the term in ``slot`` is about to be replaced: drop it from H g_new
                h_g = torch.addcmul(h_g, coeff[:, 0, slot:slot + 1], us[:, slot], value=-1.0)
            denom = torch.linalg.vecdot(dz_h, dg)
            scale = torch.linalg.vector_norm(dz_h, dim=1) * torch.linalg.vector_norm(dg, dim=1)
            # |denom| <= scale (Cauchy-Schwarz), so this is False for a NaN/Inf denominator, for scale == 0
            # and for scale == Inf: no separate finiteness test is needed.
            if host and restarted is None and progress.all_active and _all_usable(denom, scale, tiny):
                # the common step: every sample updates (the masked form below gives the same values)
                u, v = u_raw / denom.unsqueeze(1), dz_h
            else:
                usable = denom.abs() > tiny * scale
                if not progress.all_active:
                    usable = usable & progress.active
                if restarted is not None:
                    usable = usable & ~restarted
                keep = usable.unsqueeze(1)
                u = torch.where(keep, u_raw / torch.where(usable, denom, 1.0).unsqueeze(1), 0.0)
                v = torch.where(keep, dz_h, 0.0)
            us = write_slot(us, slot, u)
            vs = write_slot(vs, slot, v)
            n_stored += 1
            # Next step -H' g_new with H' = H + u v^T.
            step = torch.addcmul(h_g, u, torch.linalg.vecdot(v, g_new).unsqueeze(1)).neg()
            # Samples that stopped stay where they stopped (at the iterate recorded for them, not the one
            # before it) and stop moving; samples that failed keep their last finite iterate.
            z = progress.unless_failed(z_new, z)
            g = progress.unless_failed(g_new, g)
            res = progress.unless_failed(res_new, res)
            step = progress.freeze(step, torch.zeros_like(step))
            kept = progress.compact()
            if kept is not None:  # the samples that stopped leave the batch
                z, g, res, step, us, vs = (t.index_select(0, kept) for t in (z, g, res, step, us, vs))
                if just_restarted is not None:
                    just_restarted = just_restarted.index_select(0, kept)
        return progress.finish(self.name, nfe)

    def _backtrack(self, f: FlatMap, z: torch.Tensor, step: torch.Tensor, res: torch.Tensor, z_new: torch.Tensor,
                   f_new: torch.Tensor, res_new: torch.Tensor, stop_mode: str, nfe: int, max_iter: int,
                   active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        alpha = 1.0
        for _ in range(self.max_backtracks):
            # Armijo-like sufficient decrease on the residual norm, per sample; samples that already
            # stopped do not move and must not trigger backtracking.
            bad = active & torch.isfinite(res) & ~(res_new <= (1.0 - 1e-4 * alpha) * res)
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


def _blew_up(res_new: torch.Tensor, res: torch.Tensor, host: bool) -> bool:
    """Whether some sample's residual became NaN/Inf or grew by more than ``_BLOWUP`` in one step."""
    if host:  # on_host(z0): the [B] residuals are read in NumPy
        new, old = res_new.numpy(), res.numpy()
        return not bool(np.isfinite(new).all() and (new <= _BLOWUP * old).all())
    return not bool(torch.isfinite(res_new).all() and (res_new <= _BLOWUP * res).all())


def _all_usable(denom: torch.Tensor, scale: torch.Tensor, tiny: float) -> bool:
    """Whether every sample's Broyden update is usable: ``|denom| > tiny * scale`` (CPU tensors, on the host)."""
    return bool((np.abs(denom.numpy()) > tiny * scale.numpy()).all())
