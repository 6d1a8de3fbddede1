"""Dropout whose mask stays fixed for the whole of one fixed-point solve (variational dropout)."""

from __future__ import annotations

import torch

from ._scope import current_scope

__all__ = ["SolveDropout"]


class SolveDropout(torch.nn.Module):
    """Dropout for use inside a fixed-point map: one mask per solve, a new one for the next solve.

    A fresh mask at every evaluation of ``f`` would make the map change under the solver, so it has no
    fixed point (torchdeq's ``VariationalDropout`` fixes this with a reset you call before each solve).
    Here the mask is drawn at the module's first call in a solve of :func:`solvers.fixed_point` (or the
    :func:`solvers.implicit` decorator) and reused by every later call of that solve, including the
    backward mode's extra applications of ``f``; the next solve draws a new one, with no reset to call.
    The kept entries are scaled by ``1 / (1 - p)``. In eval mode, or with ``p = 0``, it is the identity.
    Called outside a solve it is ordinary dropout (a new mask per call).

    When the solver evaluates only the samples still iterating (``compact``), the module receives
    those rows and applies the matching rows of the solve's mask; the input's leading dimension must
    therefore be batch-major: the batch B, or B*r with each sample's r rows contiguous (as
    ``[B, K, D].flatten(0, 1)``). Use one module per place in the map: a module called on tensors of
    two shapes in one solve raises.

    Args:
        p: probability of zeroing an entry, in [0, 1).

    Raises:
        ValueError: if ``p`` is not a number in [0, 1) (a bool included).

    Examples:
        >>> import torch, solvers
        >>> drop = solvers.SolveDropout(0.5)
        >>> w = 0.5 * torch.eye(4)
        >>> x = torch.ones(3, 4)
        >>> z, info = solvers.fixed_point(lambda z: torch.tanh(drop(z) @ w + x), torch.zeros(3, 4), tol=1e-6)
        >>> bool(info.converged.all())  # one mask per solve: the map is fixed, so the solve converges
        True
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) < 1.0:
            raise ValueError(f"SolveDropout p must be a number in [0, 1); got {p!r}")
        self.p = float(p)

    def extra_repr(self) -> str:
        """The module's line in ``repr``.

        Returns:
            ``"p=..."``.
        """
        return f"p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the current solve's mask (or ordinary dropout outside a solve).

        Args:
            x: the input; its leading dimension batch-major (B, or B*r with each sample's rows contiguous).

        Returns:
            ``x`` times the mask scaled by ``1 / (1 - p)``, of the shape of ``x``; ``x`` itself in eval mode or
            with ``p = 0``.

        Raises:
            ValueError: if, within one solve, ``x`` does not match the shape of the mask drawn at the module's
                first call (the module used at two places of the map, or a leading dimension not batch-major).
            RuntimeError: if the first call in a solve sees part of the batch only (not from
                :func:`solvers.fixed_point`, whose first evaluation is on the whole batch).
        """
        if not self.training or self.p == 0.0:
            return x
        scope = current_scope()
        if scope is None:
            return torch.nn.functional.dropout(x, self.p, training=True)
        mask = scope.masks.get(id(self))
        if mask is None:
            if scope.rows is not None:  # cannot happen from fixed_point: its first evaluation is full
                raise RuntimeError("SolveDropout drew its first mask on part of the batch; call it on every "
                                   "evaluation of the map")
            mask = torch.empty_like(x, requires_grad=False).bernoulli_(1.0 - self.p).div_(1.0 - self.p)
            scope.masks[id(self)] = mask
        if scope.rows is not None and mask.shape[0] % scope.batch == 0:
            per_sample = mask.shape[0] // scope.batch
            mask = mask.view(scope.batch, per_sample, *mask.shape[1:])[scope.rows].flatten(0, 1)
        if mask.shape != x.shape:
            raise ValueError(
                f"SolveDropout got a {tuple(x.shape)} input after drawing a {tuple(mask.shape)} mask in this solve; "
                "use one SolveDropout module per place in the map, and keep the leading dimension batch-major"
            )
        return x * mask
