"""Plain (optionally damped) fixed-point iteration."""

from __future__ import annotations

from typing import Optional

import torch

from .._options import check_choice, check_real, options
from ..info import SolveInfo
from ._progress import Progress, residual_from_step
from .base import FlatMap, ForwardSolver

__all__ = ["Iterate"]


@options
class Iterate(ForwardSolver):
    """Fixed-point iteration ``z <- z + damping * (f(z) - z)``.

    The state returned for a sample is the iterate that follows its lowest-residual step
    (``keep="best"``), or the final one (``keep="last"``). With ``tol=None`` and ``keep="last"`` the
    solve is exactly ``for _ in range(max_iter): z = f(z)``, which unrolled slot attention needs.

    Attributes:
        damping: step size in (0, 1]; 1 is plain iteration.
        keep: "best" or "last".

    Raises:
        TypeError: if ``damping`` is not a number, or an unknown option is passed.
        ValueError: if ``damping`` is outside (0, 1] or ``keep`` is neither "best" nor "last".

    Examples:
        >>> import torch, solvers
        >>> z, info = solvers.fixed_point(torch.cos, torch.zeros(1, 1), forward=solvers.Iterate(),
        ...                               backward="onestep", tol=1e-6, max_iter=200)
        >>> round(z.item(), 4)
        0.7391
    """

    damping: float = 1.0
    keep: str = "best"

    name = "iterate"

    def __post_init__(self) -> None:
        check_real("Iterate damping", self.damping, 0.0, 1.0, low_open=True)
        check_choice("Iterate keep", self.keep, ("best", "last"))

    def solve(self, f: FlatMap, z0: torch.Tensor, tol: Optional[float], max_iter: int,
              stop_mode: str = "abs", nonfinite: str = "raise", snapshots: tuple[int, ...] = ()
              ) -> tuple[torch.Tensor, SolveInfo]:
        progress = Progress(z0, tol, stop_mode, nonfinite, keep=self.keep, snapshots=snapshots, f=f)
        z = z0
        nfe = 0
        damping = float(self.damping)
        for _ in range(max_iter):
            fz = f(z)
            nfe += 1
            g = fz - z
            res = residual_from_step(g, fz, stop_mode)
            z_next = fz if damping == 1.0 else z + damping * g
            if not progress.record(z_next, res):
                break
            # Samples that converged (or failed) stop changing; the rest move on.
            z = progress.freeze(z_next, z)
            kept = progress.compact()
            if kept is not None:  # the samples that stopped leave the batch
                z = z.index_select(0, kept)
        return progress.finish(self.name, nfe)
