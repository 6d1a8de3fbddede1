"""Diagnostics of a fixed point: spectral radius of J, Hutchinson ||J||_F^2, gradient fidelity."""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Union

import torch

from ._state import State, StateSpec
from .backward import BackwardMode, Implicit
from .fixed_point import fixed_point
from .forward import ForwardSolver

__all__ = ["spectral_radius", "jacobian_frobenius_sq", "gradient_fidelity"]


def spectral_radius(f: Callable[[State], State], z_star: State, iters: int = 50,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Per-sample spectral radius of J = df/dz at ``z_star`` by batched power iteration on J^T.

    Uses the growth rate of ``||(J^T)^k u||`` over the second half of the iterations, which also
    converges when the dominant eigenvalues are a complex pair (where a Rayleigh quotient oscillates).

    Args:
        f: the map (same as given to :func:`fixed_point`).
        z_star: the point to linearise at (detached internally).
        iters: power iterations (vector-Jacobian products).
        generator: optional RNG for the starting vector.

    Returns:
        Tensor [B]: estimates of rho(J) per sample.

    Examples:
        >>> import torch, solvers
        >>> w = torch.diag(torch.tensor([0.5, -0.2, 0.1]))
        >>> solvers.spectral_radius(lambda z: z @ w, torch.zeros(2, 3))
        tensor([0.5000, 0.5000])
    """
    spec = StateSpec.of(z_star)
    flat_f = spec.flat_map(f)
    z = spec.flatten(z_star).detach().requires_grad_()
    with torch.enable_grad():
        fz = flat_f(z)
    u = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
    u = u / torch.linalg.vector_norm(u, dim=1, keepdim=True)
    log_growth = []
    for _ in range(iters):
        (w,) = torch.autograd.grad(fz, z, u, retain_graph=True)
        norm = torch.linalg.vector_norm(w, dim=1)
        log_growth.append(torch.log(norm.clamp_min(torch.finfo(z.dtype).tiny)))
        u = w / norm.clamp_min(torch.finfo(z.dtype).tiny).unsqueeze(1)
    tail = torch.stack(log_growth[len(log_growth) // 2:])
    return tail.mean(dim=0).exp().detach()


def jacobian_frobenius_sq(f: Callable[[State], State], z: State, samples: int = 1,
                          create_graph: bool = True) -> torch.Tensor:
    """Hutchinson estimate of ||J||_F^2 per sample (Bai, Koltun & Kolter 2021).

    E_eps ||eps^T J||^2 with eps ~ N(0, I). Differentiable when ``create_graph`` is True, so
    ``loss + gamma * jacobian_frobenius_sq(f, z).mean() / dim`` is their Jacobian regulariser.

    Args:
        f: the map.
        z: the point (usually the fixed point returned by :func:`fixed_point`); a detached copy is used
            as the linearisation point, and gradients flow into what ``f`` closes over.
        samples: number of probe vectors.
        create_graph: keep the graph for use as a regulariser.

    Returns:
        Tensor [B]: the estimate of ||J||_F^2 for each sample (the sum of the squared entries of its Jacobian).

    Examples:
        >>> import torch, solvers
        >>> torch.manual_seed(0) and None
        >>> w = torch.diag(torch.tensor([0.5, -0.2, 0.1]))  # ||J||_F^2 = 0.25 + 0.04 + 0.01 = 0.3
        >>> estimate = solvers.jacobian_frobenius_sq(lambda z: z @ w, torch.zeros(2, 3), samples=200)
        >>> tuple(estimate.shape), bool(((estimate - 0.3).abs() < 0.1).all())
        ((2,), True)
    """
    spec = StateSpec.of(z)
    flat_f = spec.flat_map(f)
    z_leaf = spec.flatten(z).detach().requires_grad_()
    with torch.enable_grad():
        fz = flat_f(z_leaf)
        total = z_leaf.new_zeros(z_leaf.shape[0])
        for _ in range(samples):
            eps = torch.randn_like(fz)
            (vjp,) = torch.autograd.grad(fz, z_leaf, eps, retain_graph=True, create_graph=create_graph)
            total = total + vjp.pow(2).sum(dim=1)
    return total / samples


def gradient_fidelity(
    f: Callable[[State], State],
    z0: State,
    params: Iterable[torch.Tensor],
    loss_fn: Callable[[State], torch.Tensor],
    backward: Union[str, BackwardMode],
    *,
    forward: Union[str, ForwardSolver] = "broyden",
    reference: Optional[BackwardMode] = None,
    tol: Optional[float] = 1e-6,
    max_iter: int = 100,
) -> float:
    """Cosine between the parameter gradient of a backward mode and the exact implicit gradient.

    Both gradients come from the same forward solve settings; the reference defaults to
    ``Implicit(solver="gmres", tol=1e-10, max_iter=500)``.

    Args:
        f: the map, ``f(z)``; it must close over ``params``.
        z0: initial state, a tensor [B, ...] or a tuple/list/dict of tensors sharing dimension B.
        params: the tensors to differentiate with respect to (requiring grad); a parameter that does not
            reach the loss counts as a zero gradient.
        loss_fn: maps the fixed point to a scalar loss.
        backward: the backward mode under test: a name of :data:`~solvers.BACKWARD_MODES` or a mode object.
        forward: forward solver of both solves (name or object).
        reference: the backward mode taken as exact; None means the GMRES implicit mode above.
        tol: forward tolerance of both solves (None: exactly ``max_iter`` evaluations).
        max_iter: most forward evaluations of both solves; a solve that does not converge is not reported.

    Returns:
        Cosine similarity in [-1, 1] of the flattened gradients.

    Examples:
        >>> import torch, solvers
        >>> torch.manual_seed(0) and None
        >>> w = (0.3 * torch.randn(4, 4, dtype=torch.float64)).requires_grad_()
        >>> x = torch.randn(2, 4, dtype=torch.float64)
        >>> f = lambda z: torch.tanh(z @ w + x)
        >>> loss = lambda z: z.pow(2).sum()
        >>> z0 = torch.zeros(2, 4, dtype=torch.float64)  # float64: the reference's tol=1e-10 is reachable
        >>> round(solvers.gradient_fidelity(f, z0, [w], loss, "implicit"), 3)
        1.0
        >>> round(solvers.gradient_fidelity(f, z0, [w], loss, "onestep"), 3)
        0.949
    """
    params = list(params)
    reference = reference or Implicit(solver="gmres", tol=1e-10, max_iter=500)

    def flat_grad(mode: Union[str, BackwardMode]) -> torch.Tensor:
        z, _ = fixed_point(f, z0, forward=forward, backward=mode, tol=tol, max_iter=max_iter, on_fail="ignore")
        grads = torch.autograd.grad(loss_fn(z), params, allow_unused=True)
        return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                          for g, p in zip(grads, params)])

    a, b = flat_grad(backward), flat_grad(reference)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))
