"""Backward modes: how gradients reach the parameters from a fixed point."""

from .base import BackwardMode
from .implicit import ADJOINT_SOLVERS, Implicit
from .neumann import Neumann
from .onestep import OneStep
from .phantom import Phantom
from .unrolled import Unrolled

__all__ = ["BackwardMode", "Unrolled", "Implicit", "Neumann", "OneStep", "Phantom", "ADJOINT_SOLVERS"]
