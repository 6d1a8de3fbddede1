"""Spectral radius, Hutchinson Jacobian norm and gradient fidelity against known values."""

import math

import pytest
import torch

import solvers


def test_spectral_radius_of_linear_maps():
    diag = torch.diag(torch.tensor([0.9, -0.5, 0.2], dtype=torch.float64))
    theta = 0.7
    rot = 0.8 * torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]],
                             dtype=torch.float64)
    rot3 = torch.block_diag(rot, torch.tensor([[0.1]], dtype=torch.float64))
    mats = torch.stack([diag, rot3])  # per-sample Jacobians

    def f(z):
        return torch.einsum("bij,bj->bi", mats, z)

    rho = solvers.spectral_radius(f, torch.ones(2, 3, dtype=torch.float64), iters=200,
                                  generator=torch.Generator().manual_seed(0))
    assert rho.tolist() == pytest.approx([0.9, 0.8], abs=5e-3)


def test_spectral_radius_at_tanh_fixed_point():
    torch.manual_seed(0)
    w = torch.randn(10, 10, dtype=torch.float64) * 0.2
    x = torch.randn(3, 10, dtype=torch.float64)
    f = lambda z: torch.tanh(z @ w.T + x)  # noqa: E731
    z, _ = solvers.fixed_point(f, torch.zeros(3, 10, dtype=torch.float64), forward="broyden", backward="onestep",
                               tol=1e-12)
    rho = solvers.spectral_radius(f, z.detach(), iters=300)
    for b in range(3):
        jac = (1 - f(z.detach())[b] ** 2).unsqueeze(1) * w
        assert rho[b].item() == pytest.approx(torch.linalg.eigvals(jac).abs().max().item(), rel=2e-2)


def test_hutchinson_frobenius_unbiased_and_differentiable():
    a = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    f = lambda z: z @ a.T  # noqa: E731
    z = torch.zeros(4000, 5, dtype=torch.float64)
    est = solvers.jacobian_frobenius_sq(f, z, samples=1)
    assert est.mean().item() == pytest.approx(a.detach().pow(2).sum().item(), rel=0.05)
    est.mean().backward()
    assert torch.allclose(a.grad, 2 * a.detach(), rtol=0.1, atol=0.1)


def test_gradient_fidelity_orders_modes():
    torch.manual_seed(0)
    w = (0.9 * torch.linalg.qr(torch.randn(12, 12, dtype=torch.float64))[0]).requires_grad_()
    x = torch.randn(4, 12, dtype=torch.float64)
    f = lambda z: torch.tanh(z @ w.T + x)  # noqa: E731
    z0 = torch.zeros(4, 12, dtype=torch.float64)
    loss = lambda z: (z ** 2).sum()  # noqa: E731
    exact = solvers.gradient_fidelity(f, z0, [w], loss, solvers.Implicit(tol=1e-12))
    one = solvers.gradient_fidelity(f, z0, [w], loss, "onestep")
    ten = solvers.gradient_fidelity(f, z0, [w], loss, solvers.Neumann(terms=10))
    assert exact == pytest.approx(1.0, abs=1e-9)
    assert one < ten < 1.0
