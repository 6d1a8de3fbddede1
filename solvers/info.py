"""Solver statistics, returned as data (never printed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

__all__ = ["SolveInfo", "BackwardInfo"]


@dataclass
class BackwardInfo:
    """Statistics of the last adjoint (backward) solve of an implicit layer.

    Attributes:
        method: the backward mode, e.g. ``"implicit/broyden"`` or ``"neumann(3)"``.
        steps: iterations of the adjoint solver (Neumann: terms).
        nfe: vector-Jacobian products evaluated.
        residual: per-sample residual of the adjoint system ``g - J^T g - v`` in the solver's stop mode, [B].
        converged: per-sample bool [B]; all True for modes without a tolerance.
        calls: how many backward passes have run through this layer (repeated backward increments it).

    Examples:
        >>> import torch, solvers
        >>> d = torch.tensor([[0.3], [0.1]], requires_grad=True)
        >>> y, info = solvers.fixed_point(lambda y: d + y ** 5, torch.zeros(2, 1), backward="implicit", tol=1e-8)
        >>> info.backward is None  # filled in by the backward pass
        True
        >>> y.sum().backward()
        >>> info.backward.method, info.backward.calls, bool(info.backward.converged.all())
        ('implicit/broyden', 1, True)
    """

    method: str
    steps: int
    nfe: int
    residual: torch.Tensor
    converged: torch.Tensor
    calls: int = 1


@dataclass
class SolveInfo:
    """Statistics of a forward fixed-point solve.

    Attributes:
        solver: name of the forward solver.
        nfe: evaluations of the map ``f`` by the forward solver (the extra application that the
            backward modes make at the fixed point is not counted).
        steps: iterations run (for ``Iterate`` equal to ``nfe``).
        residual: per-sample residual of the step that produced the returned state, [B] (stop mode
            ``stop_mode``): for ``Iterate`` the returned state is ``f(z)`` and this is ``||f(z) - z||``.
        converged: per-sample bool [B]: residual <= tol (all True when ``tol`` is None).
        trace: per-step residuals of every sample, [steps, B].
        stop_mode: ``"abs"`` or ``"rel"``.
        tol: the tolerance asked for (None = fixed number of steps).
        nonfinite: per-sample bool [B]: the map produced NaN/Inf for this sample at some step.
        backward: filled in when a backward pass ran an adjoint computation (implicit / neumann modes).
        states: the iterates asked for with ``fixed_point(..., states=(k1, k2, ...))``, in that order: the
            state the solve would have returned after k evaluations of the map, carrying the gradient
            of the chosen backward mode (for fixed-point correction losses); empty otherwise.

    Examples:
        >>> import torch, solvers
        >>> z, info = solvers.fixed_point(torch.cos, torch.zeros(3, 1), backward="onestep", tol=1e-6,
        ...                               max_iter=100, states=(5,))
        >>> info.solver, info.nfe, info.all_converged, tuple(info.trace.shape), len(info.states)
        ('iterate', 36, True, (36, 3), 1)
    """

    solver: str
    nfe: int
    steps: int
    residual: torch.Tensor
    converged: torch.Tensor
    trace: torch.Tensor
    stop_mode: str
    tol: Optional[float]
    nonfinite: torch.Tensor
    backward: Optional[BackwardInfo] = field(default=None)
    states: list[Any] = field(default_factory=list)

    @property
    def all_converged(self) -> bool:
        """Whether every sample converged (``converged.all()``, one host synchronisation)."""
        return bool(self.converged.all())
