"""The five (forward, backward) pairs compared by Chang, Griffiths & Levine (NeurIPS 2022)."""

from __future__ import annotations

from .backward import BackwardMode, Implicit, OneStep, Unrolled
from .forward import Broyden, ForwardSolver, Iterate

__all__ = ["VARIANTS", "variant"]

VARIANTS = ("vanilla", "IN", "BN", "BB", "IB")


def variant(name: str) -> tuple[ForwardSolver, BackwardMode]:
    """Return the (forward, backward) pair of one of the paper's variants.

    vanilla = (iterate, unrolled); IN = (iterate, onestep); BN = (broyden, onestep);
    BB = (broyden, implicit via broyden); IB = (iterate, implicit via broyden).
    Plain iteration keeps the last iterate so that ``tol=None, max_iter=T`` is exactly a T-step loop.

    Args:
        name: one of :data:`VARIANTS`: "vanilla", "IN", "BN", "BB" or "IB" (case-sensitive).

    Returns:
        ``(forward, backward)``: the solver and mode objects, to pass as ``fixed_point``'s ``forward`` and
        ``backward``.

    Raises:
        ValueError: if ``name`` is not one of :data:`VARIANTS`.

    Examples:
        >>> import solvers
        >>> fwd, bwd = solvers.variant("IN")
        >>> type(fwd).__name__, type(bwd).__name__
        ('Iterate', 'OneStep')
    """
    table = {
        "vanilla": (Iterate(keep="last"), Unrolled()),
        "IN": (Iterate(keep="last"), OneStep()),
        "BN": (Broyden(), OneStep()),
        "BB": (Broyden(), Implicit(solver="broyden")),
        "IB": (Iterate(keep="last"), Implicit(solver="broyden")),
    }
    if name not in table:
        raise ValueError(f"unknown variant {name!r}; pass one of {', '.join(map(repr, VARIANTS))}")
    return table[name]
