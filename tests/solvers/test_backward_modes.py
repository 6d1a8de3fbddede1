"""Each backward mode against what it defines, in float64, on dense references."""

import pytest
import torch

import solvers

from .problems import dense_jacobian, tanh_deq

TOL = 1e-12


def _solve_and_grad(backward, forward="broyden", batch=5, dim=8, contraction=0.8, seed=0, loss_seed=3):
    f, z0, w, x = tanh_deq(batch=batch, dim=dim, contraction=contraction, seed=seed)
    c = torch.randn(batch, dim, generator=torch.Generator().manual_seed(loss_seed), dtype=torch.float64)
    z, info = solvers.fixed_point(f, z0, forward=forward, backward=backward, tol=TOL, max_iter=300)
    (z * c).sum().backward()
    return f, z, info, w, x, c


def _dense_reference(f, z_star, w, x, c, adjoint_of):
    """Gradient g^T df/dtheta with g = adjoint_of(J^T, v) computed from dense Jacobians."""
    jac = dense_jacobian(f, z_star)  # [B, D, D]
    jt = jac.transpose(1, 2)
    g = adjoint_of(jt, c)
    w.grad, x.grad = None, None
    z = z_star.detach()
    out = f(z)
    return torch.autograd.grad(out, (w, x), g)


def exact_adjoint(jt, v):
    eye = torch.eye(jt.shape[-1], dtype=jt.dtype).expand_as(jt)
    return torch.linalg.solve(eye - jt, v.unsqueeze(-1)).squeeze(-1)


def neumann_adjoint(k):
    def adjoint(jt, v):
        term, total = v, v
        for _ in range(k - 1):
            term = torch.bmm(jt, term.unsqueeze(-1)).squeeze(-1)
            total = total + term
        return total
    return adjoint


@pytest.mark.parametrize("adjoint_solver", ["broyden", "anderson", "iterate", "gmres"])
@pytest.mark.parametrize("forward", ["iterate", "anderson", "broyden"])
def test_implicit_equals_dense_ift(adjoint_solver, forward):
    mode = solvers.Implicit(solver=adjoint_solver, tol=1e-12, max_iter=300)
    f, z, info, w, x, c = _solve_and_grad(mode, forward=forward)
    got = (w.grad.clone(), x.grad.clone())
    assert info.backward is not None and info.backward.converged.all()
    assert info.backward.method == f"implicit/{adjoint_solver}"
    ref = _dense_reference(f, z, w, x, c, exact_adjoint)
    for a, b in zip(got, ref):
        assert torch.allclose(a, b, atol=1e-9, rtol=1e-8)


def test_implicit_passes_gradcheck():
    f, z0, w, _ = tanh_deq(batch=2, dim=4, contraction=0.7)
    w = w.detach()

    def solve(x):
        z, _ = solvers.fixed_point(lambda z: torch.tanh(z @ w.T + x), z0, forward="broyden",
                                   backward=solvers.Implicit(solver="gmres", tol=1e-13), tol=1e-13, max_iter=200)
        return z

    x = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(solve, (x,), eps=1e-6, atol=1e-7)


def test_fung_scalar_known_derivative():
    # y = d + y^5: dy/dd = 1 / (1 - 5 y^4) (Fung et al. 2022)
    d = torch.linspace(-0.5, 0.5, 11, dtype=torch.float64).reshape(-1, 1).requires_grad_()
    y, info = solvers.fixed_point(lambda y: d + y ** 5, torch.zeros_like(d), forward="broyden",
                                  backward=solvers.Implicit(tol=1e-13), tol=1e-13, max_iter=100)
    y.sum().backward()
    expected = 1.0 / (1.0 - 5.0 * y.detach() ** 4)
    assert torch.allclose(d.grad, expected, atol=1e-10)
    # the one-step gradient is exactly 1: the first Neumann term
    d.grad = None
    y, _ = solvers.fixed_point(lambda y: d + y ** 5, torch.zeros_like(d), backward="onestep", tol=1e-13, max_iter=100)
    y.sum().backward()
    assert torch.allclose(d.grad, torch.ones_like(d))


@pytest.mark.parametrize("terms", [1, 2, 3, 6])
def test_neumann_equals_truncated_series(terms):
    f, z, info, w, x, c = _solve_and_grad(solvers.Neumann(terms=terms), contraction=0.9)
    got = (w.grad.clone(), x.grad.clone())
    ref = _dense_reference(f, z, w, x, c, neumann_adjoint(terms))
    for a, b in zip(got, ref):
        assert torch.allclose(a, b, atol=1e-10)
    if terms > 1:
        assert info.backward.nfe == terms - 1


def test_neumann_approaches_implicit_as_terms_grow():
    errors = []
    _, _, _, w_ref, _, _ = _solve_and_grad(solvers.Implicit(tol=1e-13), contraction=0.6)
    for k in (1, 3, 10, 30):
        _, _, _, w, _, _ = _solve_and_grad(solvers.Neumann(terms=k), contraction=0.6)
        errors.append(float((w.grad - w_ref.grad).norm()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-6


def test_onestep_is_neumann_one_and_the_one_line_of_code():
    f, z, _, w, x, c = _solve_and_grad("onestep")
    got = (w.grad.clone(), x.grad.clone())
    # the hand-written "one line": slots = step(slots.detach())
    w.grad, x.grad = None, None
    (f(z.detach()) * c).sum().backward()
    assert torch.allclose(got[0], w.grad) and torch.allclose(got[1], x.grad)


def test_phantom_equals_damped_unroll_from_fixed_point():
    mode = solvers.Phantom(steps=4, damping=0.6)
    f, z, _, w, x, c = _solve_and_grad(mode)
    got = (w.grad.clone(), x.grad.clone())
    z_star, _ = solvers.fixed_point(f, torch.zeros_like(z), forward="broyden", backward="onestep", tol=TOL)
    w.grad, x.grad = None, None
    # recompute the detached solution exactly as the mode sees it
    with torch.no_grad():
        zs, _ = solvers.Broyden().solve(f, torch.zeros_like(z), TOL, 300)
    h = zs
    for _ in range(4):
        h = 0.4 * h + 0.6 * f(h)
    (h * c).sum().backward()
    assert torch.allclose(got[0], w.grad) and torch.allclose(got[1], x.grad)
    # phantom(1, 1.0) is onestep
    _, _, _, w1, _, _ = _solve_and_grad(solvers.Phantom(steps=1, damping=1.0))
    _, _, _, w2, _, _ = _solve_and_grad("onestep")
    assert torch.allclose(w1.grad, w2.grad)


def test_unrolled_equals_autograd_through_the_loop():
    f, z0, w, x = tanh_deq(contraction=0.9)
    c = torch.randn_like(z0)
    z, _ = solvers.fixed_point(f, z0, forward=solvers.Iterate(keep="last"), backward="unrolled", tol=None, max_iter=6)
    (z * c).sum().backward()
    got = (w.grad.clone(), x.grad.clone())
    w.grad, x.grad = None, None
    h = z0
    for _ in range(6):
        h = f(h)
    (h * c).sum().backward()
    assert torch.allclose(got[0], w.grad) and torch.allclose(got[1], x.grad)


@pytest.mark.parametrize("forward", ["anderson", "broyden"])
def test_unrolled_through_accelerated_solvers_approaches_implicit(forward):
    _, _, _, w_u, _, _ = _solve_and_grad("unrolled", forward=forward, contraction=0.5)
    _, _, _, w_i, _, _ = _solve_and_grad(solvers.Implicit(tol=1e-13), forward=forward, contraction=0.5)
    assert torch.allclose(w_u.grad, w_i.grad, atol=1e-7)


def test_unrolled_gives_gradient_to_initial_state_implicit_does_not():
    f, _, _, _ = tanh_deq(contraction=0.9)
    z0 = torch.zeros(6, 10, dtype=torch.float64, requires_grad=True)
    z, _ = solvers.fixed_point(f, z0, forward=solvers.Iterate(keep="last"), backward="unrolled", tol=None, max_iter=3)
    z.sum().backward()
    assert z0.grad is not None and z0.grad.abs().sum() > 0
    z0.grad = None
    z, _ = solvers.fixed_point(f, z0, forward="iterate", backward="implicit", tol=1e-10)
    z.sum().backward()
    assert z0.grad is None


@pytest.mark.parametrize("name", solvers.VARIANTS)
def test_paper_variants_are_pairs(name):
    fwd, bwd = solvers.variant(name)
    expected = {"vanilla": ("Iterate", "Unrolled"), "IN": ("Iterate", "OneStep"), "BN": ("Broyden", "OneStep"),
                "BB": ("Broyden", "Implicit"), "IB": ("Iterate", "Implicit")}[name]
    assert (type(fwd).__name__, type(bwd).__name__) == expected
    if name in ("BB", "IB"):
        assert bwd.solver == "broyden"
    f, z0, w, _ = tanh_deq(contraction=0.5)
    z, _ = solvers.fixed_point(f, z0, forward=fwd, backward=bwd, tol=1e-10, max_iter=100)
    z.sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
    with pytest.raises(ValueError, match="unknown variant"):
        solvers.variant("NN")
