"""Small problems with known answers shared by the solver tests."""

from __future__ import annotations

import torch


def tanh_deq(batch: int = 6, dim: int = 10, contraction=0.8, dtype=torch.float64, seed: int = 0,
             requires_grad: bool = True):
    """f(z) = tanh(z W^T + x) per sample with ||W||_2 = contraction (a scalar or one per sample)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, dim, generator=gen, dtype=dtype)
    w = w / torch.linalg.matrix_norm(w, ord=2)
    c = torch.as_tensor(contraction, dtype=dtype).reshape(-1, 1, 1) if torch.as_tensor(contraction).dim() else None
    x = torch.randn(batch, dim, generator=gen, dtype=dtype)
    weight = (w * (contraction if c is None else 1.0)).clone().requires_grad_(requires_grad)
    x = x.requires_grad_(requires_grad)
    if c is None:
        def f(z):
            return torch.tanh(z @ weight.T + x)
    else:
        scales = c.reshape(-1, 1)

        def f(z):
            return torch.tanh(scales * (z @ weight.T) + x)
    return f, torch.zeros(batch, dim, dtype=dtype), weight, x


def dense_jacobian(f, z_star: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobians [B, D, D] of a row-separable map at z_star."""
    z = z_star.detach().clone().requires_grad_()
    out = f(z)
    rows = []
    for i in range(z.shape[1]):
        (g,) = torch.autograd.grad(out[:, i].sum(), z, retain_graph=True)
        rows.append(g)
    return torch.stack(rows, dim=1)  # J[b, i, j] = d f_i / d z_j
