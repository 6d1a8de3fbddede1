"""Forward solvers: find z* = f(z*) for a batch of flat states."""

from .anderson import Anderson
from .base import ForwardSolver
from .broyden import Broyden
from .iterate import Iterate

__all__ = ["ForwardSolver", "Iterate", "Anderson", "Broyden"]
