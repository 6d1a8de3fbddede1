"""solvers: batched fixed-point solvers for PyTorch with pluggable implicit backward modes.

Knows nothing of slots. The face of the library is :func:`fixed_point` and the :func:`implicit`
decorator; solvers and backward modes are small immutable objects, strings are shorthands for them.
"""

from .compile import Compile
from .backward import ADJOINT_SOLVERS, BackwardMode, Implicit, Neumann, OneStep, Phantom, Unrolled
from .decorator import ImplicitFunction, SolveOptions, implicit
from .dropout import SolveDropout
from .diagnostics import gradient_fidelity, jacobian_frobenius_sq, spectral_radius
from .errors import ConvergenceError, ConvergenceWarning, NonFiniteError
from .fixed_point import BACKWARD_MODES, FORWARD_SOLVERS, as_backward, as_forward, fixed_point
from .forward import Anderson, Broyden, ForwardSolver, Iterate
from .gmres import GMRES
from .info import BackwardInfo, SolveInfo
from .variants import VARIANTS, variant

__all__ = [
    "fixed_point", "implicit", "ImplicitFunction", "SolveOptions",
    "ForwardSolver", "Iterate", "Anderson", "Broyden", "GMRES",
    "BackwardMode", "Unrolled", "Implicit", "Neumann", "OneStep", "Phantom",
    "SolveInfo", "BackwardInfo", "ConvergenceWarning", "ConvergenceError", "NonFiniteError",
    "spectral_radius", "jacobian_frobenius_sq", "gradient_fidelity",
    "variant", "VARIANTS", "FORWARD_SOLVERS", "BACKWARD_MODES", "ADJOINT_SOLVERS",
    "as_forward", "as_backward", "SolveDropout", "Compile",
]
