"""Exact implicit gradients: solve the adjoint system g = J^T g + v at the fixed point."""

from __future__ import annotations

import warnings
from typing import Callable, Optional, Union

import torch

from .._options import check_choice, check_positive_int, check_tolerance, options
from ..errors import ConvergenceError, ConvergenceWarning, user_stacklevel
from ..forward.base import FlatMap, ForwardSolver
from ..gmres import GMRES
from ..info import BackwardInfo, SolveInfo
from ._adjoint import attach_adjoint
from .base import BackwardMode

__all__ = ["Implicit", "ADJOINT_SOLVERS"]

ADJOINT_SOLVERS = ("broyden", "anderson", "iterate", "gmres")


def _linear_solver(solver: Union[str, ForwardSolver, GMRES]) -> Union[ForwardSolver, GMRES]:
    if isinstance(solver, (ForwardSolver, GMRES)):
        return solver
    from ..forward import Anderson, Broyden, Iterate

    table: dict[str, Callable[[], Union[ForwardSolver, GMRES]]] = {
        "broyden": Broyden, "anderson": Anderson, "iterate": Iterate, "gmres": GMRES}
    if not isinstance(solver, str) or solver not in table:
        raise ValueError(
            f"Implicit solver must be one of {', '.join(map(repr, ADJOINT_SOLVERS))} or a solver object "
            f"(solvers.Broyden(...), solvers.Anderson(...), solvers.Iterate(...), solvers.GMRES(...)); got {solver!r}"
        )
    return table[solver]()


@options
class Implicit(BackwardMode):
    """Implicit-function-theorem gradient: dL/dtheta = g^T df/dtheta with g = J^T g + dL/dz*.

    The adjoint fixed point is found with a linear solver of its own (Broyden, Anderson, plain iteration
    or GMRES) and its own tolerance; its statistics land in ``info.backward`` after each backward pass.
    A non-converged adjoint solve warns (or raises / is ignored, following ``fixed_point``'s
    ``on_fail``). Double backward raises a clear error.

    Attributes:
        solver: "broyden" | "anderson" | "iterate" | "gmres", or a solver object.
        tol: tolerance of the adjoint residual, or None for exactly ``max_iter`` steps.
        max_iter: most vector-Jacobian products.
        stop_mode: "abs" or "rel" (default: relative, since gradients have no natural scale).

    Raises:
        TypeError: if ``tol`` is neither None nor a number, ``max_iter`` is not an int, or an unknown option
            is passed.
        ValueError: if ``solver`` is an unknown name, ``tol`` is negative or infinite, ``max_iter`` < 1, or
            ``stop_mode`` is neither "abs" nor "rel".

    Examples:
        >>> import torch, solvers
        >>> d = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
        >>> y, _ = solvers.fixed_point(lambda y: d + y ** 5, torch.zeros(1, 1, dtype=torch.float64),
        ...                            backward=solvers.Implicit(tol=1e-12), tol=1e-12)
        >>> y.sum().backward()
        >>> abs(d.grad.item() - 1 / (1 - 5 * y.item() ** 4)) < 1e-9
        True
    """

    solver: Union[str, ForwardSolver, GMRES] = "broyden"
    tol: Optional[float] = 1e-6
    max_iter: int = 50
    stop_mode: str = "rel"

    name = "implicit"

    def __post_init__(self) -> None:
        _linear_solver(self.solver)
        check_tolerance("Implicit tol", self.tol)
        check_positive_int("Implicit max_iter", self.max_iter)
        check_choice("Implicit stop_mode", self.stop_mode, ("abs", "rel"))

    def attach(self, f: FlatMap, z_star: torch.Tensor, info: SolveInfo, on_fail: str) -> torch.Tensor:
        solver = _linear_solver(self.solver)
        method = f"implicit/{solver.name}"

        def adjoint(vjp: Callable[[torch.Tensor], torch.Tensor], v: torch.Tensor) -> tuple[torch.Tensor, BackwardInfo]:
            with torch.no_grad():
                if isinstance(solver, GMRES):
                    g, stats = solver.solve_linear(vjp, v, self.tol, self.max_iter, self.stop_mode, "best")
                else:
                    g, stats = solver.solve(lambda x: vjp(x) + v, v, self.tol, self.max_iter,
                                            self.stop_mode, "best")
            result = BackwardInfo(method=method, steps=stats.steps, nfe=stats.nfe,
                                  residual=stats.residual, converged=stats.converged)
            _report(result, self.tol, on_fail)
            return g, result

        return attach_adjoint(f, z_star, adjoint, info)


def _report(stats: BackwardInfo, tol: Optional[float], on_fail: str) -> None:
    if on_fail == "ignore" or bool(stats.converged.all()):
        return
    worst = float(stats.residual.max())
    failed = int((~stats.converged).sum())
    message = (
        f"adjoint solve ({stats.method}) left {failed} of {stats.converged.numel()} samples above "
        f"tol={tol} after {stats.nfe} vector-Jacobian products (worst residual {worst:.3g}); gradients of "
        "those samples are approximate. Raise Implicit(max_iter=...), loosen Implicit(tol=...), or check "
        "that the forward solve converged."
    )
    if on_fail == "raise":
        raise ConvergenceError(message)
    warnings.warn(message, ConvergenceWarning, stacklevel=user_stacklevel())
