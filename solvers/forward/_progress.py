"""Per-sample bookkeeping shared by the forward solvers: residuals, best iterate, stopping, traces.

The per-step decisions (which sample improved, which converged, which produced NaN/Inf) are taken on
the host from one transfer of the ``[B]`` residual vector per step: that transfer is the one host sync
a step needs anyway (to decide whether to stop), and it replaces a dozen tiny device kernels. Device work
is only done where something changes: the best iterate is a plain reference when every sample improved,
and frozen samples cost a ``where`` only once some sample has stopped.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import numpy.typing as npt
import torch

from ..errors import NonFiniteError
from ..info import SolveInfo

__all__ = ["Progress", "residual_norm", "residual_from_step", "write_slot", "HOST_DTYPES", "on_host"]

# torchdeq's relative residual divides by ||f(z)|| + 1e-9; we keep the same convention.
_REL_EPS = 1e-9

HOST_DTYPES = {torch.float64: np.float64, torch.float32: np.float32}
# States with at least this many elements select rows with index_copy rather than where.
_INDEX_COPY_MIN = 1 << 16


def residual_norm(z: torch.Tensor, fz: torch.Tensor, stop_mode: str) -> torch.Tensor:
    """Per-sample ``||f(z) - z||`` ("abs") or that over ``||f(z)||`` ("rel"); shape [B]."""
    return residual_from_step(fz - z, fz, stop_mode)


def residual_from_step(g: torch.Tensor, fz: torch.Tensor, stop_mode: str) -> torch.Tensor:
    """:func:`residual_norm` when ``g = f(z) - z`` is already at hand (saves one pass over the state)."""
    res: torch.Tensor = torch.linalg.vector_norm(g, dim=1)
    if stop_mode == "rel":
        res = res / (torch.linalg.vector_norm(fz, dim=1) + _REL_EPS)
    return res


def nonfinite_step_error(step: int, samples: list[int]) -> NonFiniteError:
    """The error of a forward solve whose map returned NaN/Inf at ``step`` for the batch ``samples``."""
    return NonFiniteError(
        f"the map returned NaN/Inf at step {step} for batch sample(s) {samples[:10]}"
        f"{' ...' if len(samples) > 10 else ''}; lower the step size (damping), check the map for "
        "overflow, or pass nonfinite='best' to return the best finite iterate flagged not converged"
    )


def on_host(z0: torch.Tensor) -> bool:
    """Whether a solve from ``z0`` may do its small per-step arithmetic in NumPy on the tensors' own memory:
    CPU tensors of a NumPy dtype, autograd off (under it every step must stay in the graph)."""
    return z0.device.type == "cpu" and z0.dtype in HOST_DTYPES and not torch.is_grad_enabled()


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
        snapshots: step counts k at which to keep the state the solve would return if stopped after k
            steps (``SolveInfo.states``; steps the solve does not reach get the final state). A step is one
            evaluation of the map, except where Broyden's line search backtracks within a step.
        f: the map being solved; if it can evaluate a subset of the batch (it has ``select_rows``, as
            :class:`solvers._compact.CompactMap`), :meth:`compact` drops samples that stopped iterating.

    After :meth:`compact`, the solver works on the local rows ``rows`` of the batch only: the tensors it
    passes to :meth:`record`, :meth:`freeze` and :meth:`freeze_vec` and the mask :attr:`active` are local,
    while the best iterate, residuals and trace stay indexed by the whole batch.
    """

    def __init__(self, z0: torch.Tensor, tol: Optional[float], stop_mode: str, nonfinite: str,
                 keep: str = "best", snapshots: tuple[int, ...] = (), f: Any = None) -> None:
        batch = z0.shape[0]
        self.tol = tol
        self.stop_mode = stop_mode
        self.nonfinite_mode = nonfinite
        self.keep = keep
        self.device = z0.device
        self.dtype = z0.dtype
        self.host_dtype = HOST_DTYPES.get(z0.dtype, np.float32)
        self.best = z0
        self._best_res: npt.NDArray[Any] = np.full(batch, np.inf, dtype=self.host_dtype)
        self._active: npt.NDArray[np.bool_] = np.ones(batch, dtype=bool)
        self._n_active = batch
        self._failed: npt.NDArray[np.bool_] = np.zeros(batch, dtype=bool)
        self._trace: list[npt.NDArray[Any]] = []
        self._active_dev: Optional[torch.Tensor] = None
        self.all_active = True
        self.steps = 0
        self._snapshot_at = frozenset(snapshots)
        self._wanted = snapshots
        self._snapshots: dict[int, torch.Tensor] = {}
        self._select_rows = getattr(f, "select_rows", None)
        # After compact(): the global index of each local row, and the whole batch's best iterate,
        # residual, failure flags and latest residual, up to date for the rows no longer local.
        self._rows: Optional[npt.NDArray[np.intp]] = None
        self._rows_dev: Optional[torch.Tensor] = None
        self._best_all: Optional[torch.Tensor] = None
        self._best_res_all = self._best_res
        self._failed_all = self._failed
        self._last_res = self._best_res

    # -- state the solvers read ---------------------------------------------------------------------
    @property
    def active(self) -> torch.Tensor:
        """Bool [B] on the state's device: samples still iterating."""
        if self._active_dev is None:
            self._active_dev = self._to_device(self._active)
        return self._active_dev

    def freeze(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """``new`` for samples still iterating, ``old`` for the others (no kernel while all iterate)."""
        if self.all_active:
            return new
        return self._pick_rows(self._active, new, old)

    def _pick_rows(self, take: npt.NDArray[np.bool_], new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """Rows of ``new`` where ``take`` [B] (host) is True, of ``old`` elsewhere.

        Large states copy only the minority rows into a copy of the majority tensor (index_copy),
        which is cheaper on CPU than a broadcast ``where``; small ones use ``where``.
        """
        if new.numel() < _INDEX_COPY_MIN:
            return torch.where(self._to_device(take).unsqueeze(1), new, old)
        n_take = int(np.count_nonzero(take))
        if 2 * n_take >= take.shape[0]:
            base, src, rows = new, old, np.flatnonzero(~take)
        else:
            base, src, rows = old, new, np.flatnonzero(take)
        idx = torch.from_numpy(rows).to(self.device)
        return base.index_copy(0, idx, src.index_select(0, idx))

    def unless_failed(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """``new`` except for samples that failed (NaN/Inf), which keep ``old``: [B, D] or [B] tensors.

        For a solver whose recorded candidate is the new iterate itself (Broyden), a sample that just
        converged must stay at that iterate, not go back to the one before it: the following evaluations of
        the map there repeat its last residual instead of recording the larger one of its previous iterate.
        """
        if not self._failed.any():
            return new
        take = self._to_device(~self._failed)
        return torch.where(take.unsqueeze(1) if new.dim() == 2 else take, new, old)

    def freeze_vec(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """:meth:`freeze` for per-sample vectors [B]."""
        if self.all_active:
            return new
        return torch.where(self.active, new, old)

    # -- one step -----------------------------------------------------------------------------------
    def record(self, candidate: torch.Tensor, res: torch.Tensor) -> bool:
        """Record one step; returns True while some sample still needs iterating.

        Args:
            candidate: the state to return for each sample if this step is its best [B, D].
            res: the residual belonging to ``candidate`` [B].
        """
        self.steps += 1
        # The one host sync per step: B numbers (no copy on CPU; .numpy() keeps the tensor alive). The common
        # case, a CPU vector outside autograd, skips detach() and cpu(): two dispatches on every step.
        if res.device.type == "cpu" and res.dtype in HOST_DTYPES and not res.requires_grad:
            host = res.numpy()
        else:
            res = res.detach()
            if res.dtype not in HOST_DTYPES:
                res = res.float()
            host = res.cpu().numpy()
        if host.dtype != self.host_dtype:
            host = host.astype(self.host_dtype)
        rows = self._rows
        if rows is None:
            self._trace.append(host)
        else:
            self._last_res[rows] = host
            self._trace.append(self._last_res.copy())
        active = self._active
        finite = np.isfinite(host)
        if self.keep == "last":
            take = active & finite
        else:
            take = host < self._best_res  # False for NaN
            if not self.all_active:
                take &= active
        if take.all():
            self.best = candidate
            self._best_res = host
        elif take.any():
            self.best = self._pick_rows(take, candidate, self.best)
            self._best_res = np.where(take, host, self._best_res)
        if self.steps in self._snapshot_at:
            self._snapshots[self.steps] = self._whole_best()
        if finite.all():
            still = active
        else:
            newly_bad = active & ~finite
            if newly_bad.any():
                if self.nonfinite_mode == "raise":
                    bad = (np.flatnonzero(newly_bad) if rows is None else rows[newly_bad]).tolist()
                    raise nonfinite_step_error(self.steps, bad)
                self._failed = self._failed | newly_bad
            still = active & finite
        if self.tol is not None:
            still = still & (host > self.tol)  # non-finite entries are already out of ``still``
        n_still = int(np.count_nonzero(still))
        if n_still != self._n_active:
            self._active = still
            self._n_active = n_still
            self._active_dev = None
            self.all_active = n_still == still.shape[0]
        return n_still > 0

    def compact(self) -> Optional[torch.Tensor]:
        """Drop the rows that stopped iterating, if the map allows it and enough did.

        Returns None (nothing changes), or the local indices [n] of the rows kept: the solver then keeps
        only those rows of every per-sample tensor it carries (``t.index_select(0, kept)``), and the map
        evaluates those samples only. Rows are dropped once at least an eighth of them stopped, so the
        copies of the solver's state this costs stay few.
        """
        if self._select_rows is None or self.all_active:
            return None
        local = self._active.shape[0]
        if self._n_active == 0 or local - self._n_active < max(1, local // 8):
            return None
        kept = np.flatnonzero(self._active)
        self._store_local()
        if self._rows is None:
            self._last_res = self._trace[-1].copy()
            self._rows = kept
        else:
            self._rows = self._rows[kept]
        kept_dev = torch.from_numpy(kept).to(self.device)
        self._rows_dev = torch.from_numpy(self._rows).to(self.device)
        self.best = self.best.index_select(0, kept_dev)
        self._best_res = self._best_res[kept]
        self._failed = self._failed[kept]
        self._select_rows(self._rows_dev)
        self._active = np.ones(kept.shape[0], dtype=bool)
        self._n_active = kept.shape[0]
        self._active_dev = None
        self.all_active = True
        return torch.from_numpy(kept).to(self.device)

    def _store_local(self) -> None:
        """Write the local rows' best iterate, residual and failure flags into the whole batch's."""
        if self._rows is None:
            self._best_all, self._best_res_all, self._failed_all = self.best, self._best_res, self._failed
            return
        assert self._best_all is not None and self._rows_dev is not None
        self._best_all = self._best_all.index_copy(0, self._rows_dev, self.best)
        self._best_res_all = self._best_res_all.copy()
        self._best_res_all[self._rows] = self._best_res
        self._failed_all = self._failed_all.copy()
        self._failed_all[self._rows] = self._failed

    def _whole_best(self) -> torch.Tensor:
        if self._rows is None:
            return self.best
        assert self._best_all is not None and self._rows_dev is not None
        return self._best_all.index_copy(0, self._rows_dev, self.best)

    def finish(self, solver: str, nfe: int) -> tuple[torch.Tensor, SolveInfo]:
        """Return the chosen iterate per sample (the whole batch) and the statistics."""
        best = self._whole_best()
        self._store_local()
        best_res, failed = self._best_res_all, self._failed_all
        if self.tol is None:
            converged = ~failed
        else:
            converged = (best_res <= self.tol) & ~failed
        if self._trace:
            trace = torch.from_numpy(np.stack(self._trace)).to(device=self.device, dtype=self.dtype)
        else:
            trace = torch.zeros((0, best_res.shape[0]), dtype=self.dtype, device=self.device)
        info = SolveInfo(
            solver=solver, nfe=nfe, steps=self.steps,
            residual=torch.from_numpy(best_res.copy()).to(device=self.device, dtype=self.dtype),
            converged=self._to_device(converged), trace=trace, stop_mode=self.stop_mode, tol=self.tol,
            nonfinite=self._to_device(failed),
            states=[self._snapshots.get(k, best) for k in self._wanted],
        )
        return best, info

    def _to_device(self, mask: npt.NDArray[np.bool_]) -> torch.Tensor:
        return torch.from_numpy(np.array(mask, copy=True)).to(self.device)
