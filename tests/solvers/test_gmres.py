"""Batched GMRES for the adjoint system."""

import torch

import solvers


def test_gmres_solves_linear_fixed_point_per_sample():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 20, 20, generator=gen, dtype=torch.float64) * 0.3  # spectral radius ~1.3: Neumann diverges
    v = torch.randn(3, 20, generator=gen, dtype=torch.float64)
    apply_a = lambda g: torch.einsum("bij,bj->bi", a, g)  # noqa: E731
    g, info = solvers.GMRES(restart=20).solve_linear(apply_a, v, 1e-10, 100, "abs")
    exact = torch.linalg.solve(torch.eye(20, dtype=torch.float64) - a, v.unsqueeze(-1)).squeeze(-1)
    assert info.converged.all()
    assert torch.allclose(g, exact, atol=1e-8)
    assert info.nfe <= 23  # one Krylov cycle of 20 plus residual checks


def test_gmres_restarts_and_reports_nonconvergence():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(2, 30, 30, generator=gen, dtype=torch.float64) * 0.15
    v = torch.randn(2, 30, generator=gen, dtype=torch.float64)
    apply_a = lambda g: torch.einsum("bij,bj->bi", a, g)  # noqa: E731
    g, info = solvers.GMRES(restart=5).solve_linear(apply_a, v, 1e-9, 200, "abs")
    assert info.converged.all()
    _, short = solvers.GMRES(restart=5).solve_linear(apply_a, v, 1e-14, 4, "abs")
    assert not short.converged.any()
