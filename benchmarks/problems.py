"""Benchmark problems for the fixed-point solvers: plain torch maps with known facts.

Every problem is a :class:`Problem` whose ``make(batch, dtype)`` returns ``(f, z0)``: ``f`` maps a flat
batch ``[B, D]`` to ``[B, D]`` (rows never interact) and ``z0`` is the standard starting point.
``Problem.check(z)`` returns the error of a solution against what is known about the answer (``nan`` where
there is nothing exact to compare with); the known answers: docs/benchmarks/methods.md#solvers.

Problems:
    :func:`tanh_deq` — ``f(z) = tanh(z W + x)`` with a chosen contraction factor, homogeneous or mixed.
    :func:`h_equation` — Chandrasekhar's H-equation (Kelley), N = 100, c = 0.9, midpoint rule.
    :func:`bratu` — discretised 1-D Bratu problem written as ``u = (-A)^-1 lambda e^u``.
    :func:`broyden_tridiagonal` — MINPACK's Broyden tridiagonal function as ``x = x - omega F(x)``.
    :func:`integral_equation` — MINPACK's discrete integral equation function, ``x = -(h/2) K (x + t + 1)^3``.
    :func:`slot_attention_step` — one step of a random slot-attention module, flattened slots as the state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch

__all__ = ["Problem", "tanh_deq", "h_equation", "bratu", "bratu_exact", "broyden_tridiagonal", "integral_equation",
           "slot_attention_step", "slot_attention_map", "TanhDEQ", "max_residual"]

FlatMap = Callable[[torch.Tensor], torch.Tensor]
Device = Union[str, torch.device, None]
Made = tuple[FlatMap, torch.Tensor]  # what a problem's make() returns: (f, z0)


@dataclass
class Problem:
    """A fixed-point problem ``z = f(z)``.

    Attributes:
        name: short label used in tables.
        dim: state size D.
        make: ``make(batch, dtype, device=None) -> (f, z0)`` (tensors on ``device``; CPU when None).
        check: ``check(z) -> float``: error of a solution ``z [B, D]`` against the known fact.
    """

    name: str
    dim: int
    make: Callable[..., Made]
    check: Callable[[torch.Tensor], float] = lambda z: float("nan")


def max_residual(f: FlatMap, z: torch.Tensor, relative: bool = False) -> float:
    """The largest per-sample ``||f(z) - z||_2`` of a batch (``relative``: over ``||f(z)||_2 + 1e-9``)."""
    with torch.no_grad():
        fz = f(z)
        res = torch.linalg.vector_norm(fz - z, dim=1)
        if relative:
            res = res / (torch.linalg.vector_norm(fz, dim=1) + 1e-9)
    return float(res.max())


def _largest_residual(make) -> Callable[[torch.Tensor], float]:
    """A ``check`` for problems without a closed-form answer: the largest ||f(z) - z|| of the batch."""
    return lambda z: max_residual(make(z.shape[0], z.dtype, z.device)[0], z)


def _second_difference(n: int) -> torch.Tensor:
    """The Dirichlet second-difference matrix ``2 on the diagonal, -1 beside it`` (float64), i.e. ``-h^2 A``."""
    off = torch.ones(n - 1, dtype=torch.float64)
    return 2.0 * torch.eye(n, dtype=torch.float64) - torch.diag(off, 1) - torch.diag(off, -1)


def _neighbours(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_{i-1}`` and ``x_{i+1}`` of every row, zero beyond the ends (Dirichlet boundary)."""
    return torch.nn.functional.pad(x[:, :-1], (1, 0)), torch.nn.functional.pad(x[:, 1:], (0, 1))


def _unit_spectral(dim: int, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    w = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    w = w / torch.linalg.matrix_norm(w, ord=2)
    return w.to(dtype)


def tanh_deq(dim: int = 256, contraction: Union[float, Sequence[float]] = 0.9, seed: int = 0,
             name: Optional[str] = None) -> Problem:
    """``f(z) = tanh(c_b * (z W) + x_b)`` with ``||W||_2 = 1``, so sample b is a ``c_b``-contraction.

    ``contraction`` is one number (homogeneous batch) or a list of numbers cycled over the batch (mixed
    batch: samples of one batch converge at different rates, which exercises per-sample stopping).
    ``check`` returns the largest residual ``||f(z) - z||`` of the batch (0 at the exact fixed point).
    """
    mixed = not isinstance(contraction, (int, float))
    cs = [float(c) for c in (contraction if mixed else [contraction])]
    if not all(0.0 < c < 1.0 for c in cs):
        raise ValueError(f"contraction factors must lie in (0, 1); got {cs}")
    label = name or (f"tanh d={dim} c={'mix' if mixed else cs[0]}")

    def make(batch: int, dtype: torch.dtype = torch.float32, device: Device = None) -> Made:
        gen = torch.Generator().manual_seed(seed)
        w = _unit_spectral(dim, gen, dtype).to(device)
        x = torch.randn(batch, dim, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        if mixed:
            scale = torch.tensor([cs[i % len(cs)] for i in range(batch)], dtype=dtype, device=device).unsqueeze(1)

            def f(z: torch.Tensor) -> torch.Tensor:
                return torch.tanh(torch.addcmul(x, scale, z @ w))
        else:
            wc = w * cs[0]

            def f(z: torch.Tensor) -> torch.Tensor:
                return torch.tanh(torch.addmm(x, z, wc))
        return f, torch.zeros(batch, dim, dtype=dtype, device=device)

    return Problem(label, dim, make, _largest_residual(make))


class TanhDEQ(torch.nn.Module):
    """A trainable tanh DEQ layer for the IFT training benchmark: ``z = tanh(z W + U x)``, readout V z.

    ``W`` starts with spectral norm ``contraction`` (a few optimiser steps barely move it), ``U`` and
    ``V`` are ordinary linear maps. ``f(z, x_inj)`` is the fixed-point map for the injected input.
    """

    def __init__(self, dim: int = 256, in_dim: int = 64, out_dim: int = 10, contraction: float = 0.9,
                 seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(contraction * _unit_spectral(dim, gen, torch.float32))
        self.u = torch.nn.Linear(in_dim, dim)
        self.v = torch.nn.Linear(dim, out_dim)
        with torch.no_grad():
            self.u.weight.copy_(torch.randn(dim, in_dim, generator=gen) / math.sqrt(in_dim))
            self.u.bias.zero_()
            self.v.weight.copy_(torch.randn(out_dim, dim, generator=gen) / math.sqrt(dim))
            self.v.bias.zero_()
        self.dim = dim

    def f(self, z: torch.Tensor, inj: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.addmm(inj, z, self.w))


def h_equation(n: int = 100, c: float = 0.9) -> Problem:
    """Chandrasekhar's H-equation, Kelley's standard test for Anderson/Broyden, as ``x = G(x)``.

    ``G_i(x) = 1 / (1 - (c / 2N) sum_j mu_i x_j / (mu_i + mu_j))`` with midpoint nodes
    ``mu_i = (i - 1/2) / N``, ``x0 = 1``. ``check`` returns ``|mean(x) - (2/c)(1 - sqrt(1 - c))|`` (worst over
    the batch), the exact mean of the discrete system's solution.
    """
    exact_mean = (2.0 / c) * (1.0 - math.sqrt(1.0 - c))

    def make(batch: int = 1, dtype: torch.dtype = torch.float64, device: Device = None) -> Made:
        mu = (torch.arange(1, n + 1, dtype=torch.float64) - 0.5) / n
        kernel = (c / (2 * n)) * mu[:, None] / (mu[:, None] + mu[None, :])  # K[i, j]
        kt = kernel.T.contiguous().to(dtype=dtype, device=device)

        def f(x: torch.Tensor) -> torch.Tensor:
            return torch.reciprocal(1.0 - x @ kt)

        return f, torch.ones(batch, n, dtype=dtype, device=device)

    def check(z: torch.Tensor) -> float:
        return float((z.double().mean(dim=1) - exact_mean).abs().max())

    return Problem(f"H-equation N={n} c={c}", n, make, check)


def bratu_exact(lam: float, x: float = 0.5) -> float:
    """The lower solution of ``u'' + lam e^u = 0``, ``u(0) = u(1) = 0``, at ``x``.

    ``u(x) = -2 log(cosh((x - 1/2) theta / 2) / cosh(theta / 4))`` with theta the smaller root of
    ``theta = sqrt(2 lam) cosh(theta / 4)``.
    """
    theta = 0.0
    for _ in range(200):  # fixed-point iteration for the smaller root (a contraction for lam < 3.51)
        theta = math.sqrt(2.0 * lam) * math.cosh(theta / 4.0)
    return -2.0 * math.log(math.cosh((x - 0.5) * theta / 2.0) / math.cosh(theta / 4.0))


def bratu(n: int = 99, lam: Union[float, Sequence[float]] = 1.0) -> Problem:
    """1-D Bratu ``u'' + lambda e^u = 0`` on (0, 1), ``u(0) = u(1) = 0``, as ``u = (-A)^-1 lambda e^u``.

    ``A`` is the Dirichlet Laplacian on ``n`` interior points (h = 1/(n+1), second differences), so the
    map's Jacobian is ``(-A)^-1 diag(lambda e^u)``. ``lambda`` may be a list (cycled over the batch).
    ``check`` returns ``|u(1/2) - exact|`` (worst sample; :func:`bratu_exact`).
    """
    if n % 2 == 0:
        raise ValueError("use an odd n so that x = 1/2 is a grid point")
    lams = [float(v) for v in (lam if not isinstance(lam, (int, float)) else [lam])]
    mid = (n - 1) // 2

    def make(batch: int = 1, dtype: torch.dtype = torch.float64, device: Device = None) -> Made:
        minus_a = _second_difference(n) / (1.0 / (n + 1)) ** 2
        green_t = torch.linalg.inv(minus_a).T.contiguous().to(dtype=dtype, device=device)  # symmetric anyway
        lam_b = torch.tensor([lams[i % len(lams)] for i in range(batch)], dtype=dtype, device=device).unsqueeze(1)

        def f(u: torch.Tensor) -> torch.Tensor:
            return (lam_b * torch.exp(u)) @ green_t

        return f, torch.zeros(batch, n, dtype=dtype, device=device)

    def check(z: torch.Tensor) -> float:
        exact = torch.tensor([bratu_exact(lams[i % len(lams)]) for i in range(z.shape[0])], dtype=torch.float64)
        return float((z[:, mid].double().cpu() - exact).abs().max())

    label = f"Bratu n={n} lambda={lams[0] if len(lams) == 1 else 'mix'}"
    return Problem(label, n, make, check)


def broyden_tridiagonal(n: int = 100, omega: float = 1.0 / 6.0) -> Problem:
    """MINPACK's Broyden tridiagonal function (Moré, Garbow & Hillstrom 1981, problem 30) as a fixed point.

    ``F_i(x) = (3 - 2 x_i) x_i - x_{i-1} - 2 x_{i+1} + 1`` with ``x_0 = x_{n+1} = 0``, start ``x0 = -1``.
    Written as ``f(x) = x - omega F(x)``. ``check`` returns ``max |F(x)|`` (worst sample).
    """

    def big_f(x: torch.Tensor) -> torch.Tensor:
        left, right = _neighbours(x)
        return (3.0 - 2.0 * x) * x - left - 2.0 * right + 1.0

    def make(batch: int = 1, dtype: torch.dtype = torch.float64, device: Device = None) -> Made:
        def f(x: torch.Tensor) -> torch.Tensor:
            return x - omega * big_f(x)

        return f, -torch.ones(batch, n, dtype=dtype, device=device)

    def check(z: torch.Tensor) -> float:
        with torch.no_grad():
            return float(big_f(z.double()).abs().max())

    return Problem(f"Broyden tridiagonal n={n}", n, make, check)


def _green_kernel(n: int) -> torch.Tensor:
    """``K[i, j] = min(t_i, t_j) (1 - max(t_i, t_j))`` on ``t_i = i / (n + 1)``: the Green's function of u''."""
    t = torch.arange(1, n + 1, dtype=torch.float64) / (n + 1)
    lo, hi = torch.minimum(t[:, None], t[None, :]), torch.maximum(t[:, None], t[None, :])
    return lo * (1.0 - hi)


def integral_equation(n: int = 100) -> Problem:
    """MINPACK's discrete integral equation function (Moré, Garbow & Hillstrom 1981, problem 29).

    ``F_i(x) = x_i + (h/2) [(1 - t_i) sum_{j<=i} t_j (x_j + t_j + 1)^3 + t_i sum_{j>i} (1 - t_j)(x_j + t_j + 1)^3]``
    with ``h = 1/(n+1)``, ``t_i = i h``, start ``x0_i = t_i (t_i - 1)``. Its natural fixed-point form is
    ``x = -(h/2) K (x + t + 1)^3`` with ``K`` the Green's function of ``u''`` (``F(x) = x - f(x)``). ``check``
    returns the larger of ``max |F_29(x)|`` and ``max |F_28(x)|`` (MGH problem 28, which has the same root; worst
    sample).
    """
    t64 = torch.arange(1, n + 1, dtype=torch.float64) / (n + 1)
    h = 1.0 / (n + 1)

    kernel = -(h / 2.0) * _green_kernel(n)

    def make(batch: int = 1, dtype: torch.dtype = torch.float64, device: Device = None) -> Made:
        kt = kernel.T.contiguous().to(dtype=dtype, device=device)
        t = t64.to(dtype=dtype, device=device)

        def f(x: torch.Tensor) -> torch.Tensor:
            return (x + t + 1.0).pow(3) @ kt

        return f, (t * (t - 1.0)).expand(batch, n).clone()

    def check(z: torch.Tensor) -> float:
        x = z.double().cpu()
        cube = (x + t64 + 1.0).pow(3)
        f29 = x - cube @ kernel.T
        left, right = _neighbours(x)
        f28 = 2.0 * x - left - right + h * h * cube / 2.0
        # F_28 is F_29 multiplied by the second-difference matrix (entries ~4), so both vanish together.
        return float(max(f29.abs().max(), f28.abs().max()))

    return Problem(f"integral equation n={n}", n, make, check)


def slot_attention_map(batch: int, dtype: torch.dtype = torch.float32, device: Device = None, seed: int = 0,
                       num_inputs: int = 64, in_dim: int = 32, slot_dim: int = 32, num_slots: int = 5,
                       mlp_hidden: int = 64, requires_grad: bool = False
                       ) -> tuple[FlatMap, torch.Tensor, list[torch.Tensor]]:
    """One slot-attention iteration of a fixed, randomly initialised :class:`deqslots.SlotAttention`.

    The defaults are the ``cpu-small`` architecture (5 slots of size 32, MLP 64) on 64 random input
    features (an 8x8 feature map). The state is flattened to ``[B, num_slots * slot_dim]``.

    Returns:
        ``(f, z0, params)``: the flat map, the initial slots ``mu + sigma * noise`` (flattened) and the
        tensors ``f`` depends on that a gradient would reach (the step's parameters, and the keys and
        values as leaf tensors), with ``requires_grad`` as asked.
    """
    from deqslots.slot_attention.module import SlotAttention  # benchmarks of the bare solvers need no deqslots

    with torch.random.fork_rng(devices=[]):  # the module's own initialisation, independent of global state
        torch.manual_seed(seed)
        sa = SlotAttention(in_dim, slot_dim, num_slots, iters=3, mlp_hidden=mlp_hidden, variant="IN")
    sa = sa.to(dtype=dtype, device=device).requires_grad_(requires_grad)
    gen = torch.Generator().manual_seed(seed + 1)
    feats = torch.randn(batch, num_inputs, in_dim, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    noise = torch.randn(batch, num_slots, slot_dim, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    with torch.no_grad():
        inputs = sa.norm_inputs(feats)
        # Leaves, so that repeated backward passes (benchmarks) need no graph up to the encoder.
        k, v = sa.to_k(inputs).requires_grad_(requires_grad), sa.to_v(inputs).requires_grad_(requires_grad)
        z0 = (sa.slots_mu + sa.slots_log_sigma.exp() * noise).reshape(batch, num_slots * slot_dim)

    def f(z: torch.Tensor) -> torch.Tensor:
        return sa.step(z.reshape(z.shape[0], num_slots, slot_dim), k, v).reshape(z.shape[0], -1)

    step_params = [p for name, p in sa.named_parameters()
                   if not name.startswith(("slots_", "to_k", "to_v", "norm_inputs"))]
    return f, z0, step_params + ([k, v] if requires_grad else [])


def slot_attention_step(num_inputs: int = 64, seed: int = 0, **sizes) -> Problem:
    """The slot-attention step at its fixed point (see :func:`slot_attention_map`).

    ``check`` returns the largest residual ``||f(z) - z||`` of the batch (nothing is known in closed form).
    """
    def make(batch: int, dtype: torch.dtype = torch.float32, device: Device = None) -> Made:
        f, z0, _ = slot_attention_map(batch, dtype, device, seed, num_inputs, **sizes)
        return f, z0

    dim = sizes.get("num_slots", 5) * sizes.get("slot_dim", 32)
    return Problem(f"slot-attention step N={num_inputs} K={sizes.get('num_slots', 5)}", dim, make,
                   _largest_residual(make))
