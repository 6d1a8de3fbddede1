"""Phantom gradients: a few damped unrolled steps from the detached fixed point (Geng et al. 2021)."""

from __future__ import annotations

import torch

from .._options import check_positive_int, check_real, options
from ..forward.base import FlatMap
from ..info import SolveInfo
from .base import BackwardMode

__all__ = ["Phantom"]


@options
class Phantom(BackwardMode):
    """``z <- (1 - damping) z + damping f(z)`` for ``steps`` steps from ``z_star.detach()``, with autograd.

    ``Phantom(steps=1, damping=1.0)`` equals :class:`OneStep`. Adds ``steps`` evaluations of ``f``.

    Attributes:
        steps: unrolled steps k >= 1.
        damping: tau in (0, 1].

    Raises:
        TypeError: if ``steps`` is not an int, ``damping`` is not a number, or an unknown option is passed.
        ValueError: if ``steps`` < 1 or ``damping`` is outside (0, 1].

    Examples:
        >>> import torch, solvers
        >>> w = torch.tensor(0.5, requires_grad=True)
        >>> z, _ = solvers.fixed_point(lambda z: w * z + 1, torch.zeros(1, 1), tol=1e-8,
        ...                            backward=solvers.Phantom(steps=5, damping=0.5))
        >>> z.sum().backward(); round(w.grad.item(), 4)  # the exact gradient 1 / (1 - w)^2 = 4
        3.0508
    """

    steps: int = 5
    damping: float = 0.5

    name = "phantom"

    def __post_init__(self) -> None:
        check_positive_int("Phantom steps", self.steps)
        check_real("Phantom damping", self.damping, 0.0, 1.0, low_open=True)

    def attach(self, f: FlatMap, z_star: torch.Tensor, info: SolveInfo, on_fail: str) -> torch.Tensor:
        z = z_star.detach()
        tau = float(self.damping)
        for _ in range(self.steps):
            z = f(z) if tau == 1.0 else (1.0 - tau) * z + tau * f(z)
        return z
