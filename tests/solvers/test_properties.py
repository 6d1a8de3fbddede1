"""Property-based tests: random contractive maps of random shapes and structures."""

import pytest
import torch

import solvers

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

SOLVERS = [solvers.Iterate(), solvers.Anderson(), solvers.Broyden()]


@st.composite
def contractive_problems(draw):
    batch = draw(st.integers(1, 4))
    n_parts = draw(st.integers(1, 3))
    shapes = [tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))) for _ in range(n_parts)]
    kind = draw(st.sampled_from(["tensor", "tuple", "dict"])) if n_parts > 1 else "tensor"
    rho = draw(st.floats(0.05, 0.9))
    seed = draw(st.integers(0, 2**16))
    return batch, shapes, kind, rho, seed


def state_codec(batch, shapes, kind):
    """(join, split): a state of structure ``kind`` ("tensor", "tuple", "list", "dict") with parts of
    ``shapes`` <-> one flat [batch, sum of sizes] tensor. A "tensor" state has one part."""
    sizes = [int(torch.Size(s).numel()) for s in shapes]

    def join(state):
        parts = [state] if kind == "tensor" else (list(state.values()) if kind == "dict" else list(state))
        return torch.cat([p.reshape(batch, -1) for p in parts], dim=1)

    def split(flat):
        parts = [p.reshape(batch, *s) for p, s in zip(torch.split(flat, sizes, dim=1), shapes)]
        if kind == "tensor":
            return parts[0]
        if kind == "dict":
            return {f"p{i}": p for i, p in enumerate(parts)}
        return parts if kind == "list" else tuple(parts)

    return join, split


def build(batch, shapes, kind, rho, seed):
    gen = torch.Generator().manual_seed(seed)
    dim = sum(int(torch.Size(s).numel()) for s in shapes)
    w = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    w = rho * w / torch.linalg.matrix_norm(w, ord=2)
    x = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    # a "tensor" state drawn with several parts is one flat tensor of their total size
    to_flat, from_flat = state_codec(batch, [(dim,)] if kind == "tensor" and len(shapes) > 1 else shapes, kind)

    def f(state):
        return from_flat(torch.tanh(to_flat(state) @ w.T + x))

    return f, from_flat(torch.zeros(batch, dim, dtype=torch.float64)), to_flat


@settings(max_examples=25, deadline=None)
@given(contractive_problems())
def test_every_solver_converges_and_they_agree(problem):
    f, z0, to_flat = build(*problem)
    results = []
    for solver in SOLVERS:
        z, info = solvers.fixed_point(f, z0, forward=solver, backward="onestep", tol=1e-10, max_iter=500)
        assert info.converged.all()
        assert type(z) is type(z0)
        results.append(to_flat(z))
    for other in results[1:]:
        assert torch.allclose(results[0], other, atol=1e-9)


ADJOINT_SOLVERS = ["broyden", "anderson", "gmres", "iterate"]


@st.composite
def gradient_problems(draw):
    batch = draw(st.integers(1, 3))
    n_parts = draw(st.integers(1, 3))
    shapes = [tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2))) for _ in range(n_parts)]
    kind = draw(st.sampled_from(["tuple", "list", "dict"])) if n_parts > 1 else "tensor"
    rho = draw(st.floats(0.05, 0.85))
    affine = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return batch, shapes, kind, rho, affine, seed


@settings(max_examples=25, deadline=None)
@given(gradient_problems())
def test_implicit_gradients_match_a_dense_ift_reference(problem):
    """z* = sigma(W z* + x) (sigma = tanh or identity, ||W|| < 0.85) on states of random structure: every
    adjoint solver of Implicit gives dL/dx and dL/dW equal to the dense float64 implicit-function-theorem
    gradient, L = sum(c * z*)."""
    batch, shapes, kind, rho, affine, seed = problem
    gen = torch.Generator().manual_seed(seed)
    dim = sum(int(torch.Size(s).numel()) for s in shapes)
    w0 = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    w0 = rho * w0 / torch.linalg.matrix_norm(w0, ord=2)
    x0 = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    c = torch.randn(batch, dim, generator=gen, dtype=torch.float64)
    sigma = (lambda a: a) if affine else torch.tanh

    join, split = state_codec(batch, shapes, kind)
    # dense reference: dz = (I - D W)^-1 D (dW z + dx) with D = sigma'(W z* + x)
    with torch.no_grad():
        z = torch.zeros(batch, dim, dtype=torch.float64)
        for _ in range(400):
            z = sigma(z @ w0.T + x0)
        d = torch.ones_like(z) if affine else 1 - z.pow(2)
        jac = d.unsqueeze(2) * w0  # [B, D, D]
        u = torch.linalg.solve(torch.eye(dim, dtype=torch.float64) - jac.transpose(1, 2), c.unsqueeze(2)).squeeze(2)
        ref_x = d * u
        ref_w = ref_x.T @ z
    for adjoint in ADJOINT_SOLVERS:
        w = w0.clone().requires_grad_()
        x = x0.clone().requires_grad_()
        f = lambda state, w=w, x=x: split(sigma(join(state) @ w.T + x))  # noqa: E731
        backward = solvers.Implicit(solver=adjoint, tol=1e-11, max_iter=400, stop_mode="abs")
        z_star, info = solvers.fixed_point(f, split(torch.zeros(batch, dim, dtype=torch.float64)),
                                           forward="broyden", backward=backward, tol=1e-12, max_iter=200)
        assert info.converged.all()
        (join(z_star) * c).sum().backward()
        assert info.backward.converged.all(), adjoint
        assert torch.allclose(x.grad, ref_x, atol=1e-8, rtol=1e-7), adjoint
        assert torch.allclose(w.grad, ref_w, atol=1e-8, rtol=1e-7), adjoint
