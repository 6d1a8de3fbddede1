"""First-order Neumann gradient: backprop through one application of f at the detached fixed point."""

from __future__ import annotations

import torch

from .._options import options
from ..forward.base import FlatMap
from ..info import SolveInfo
from .base import BackwardMode

__all__ = ["OneStep"]


@options
class OneStep(BackwardMode):
    """``z = f(z_star.detach())``: the paper's one line of code (Jacobian-free backprop, Fung et al. 2022).

    The gradient is ``v^T df/dtheta``, i.e. the first term of the Neumann series of ``(I - J)^-1``.
    Memory and time of the backward pass do not depend on the forward iteration count. Double backward
    works (it is ordinary autograd through one step).

    Examples:
        >>> import torch, solvers
        >>> d = torch.tensor([[0.3]], requires_grad=True)
        >>> y, _ = solvers.fixed_point(lambda y: d + y ** 5, torch.zeros(1, 1), backward="onestep", tol=1e-10)
        >>> y.sum().backward(); d.grad.item()  # one-step gradient is 1, the exact one 1/(1-5y^4)
        1.0
    """

    name = "onestep"

    def attach(self, f: FlatMap, z_star: torch.Tensor, info: SolveInfo, on_fail: str) -> torch.Tensor:
        return f(z_star.detach())
