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


def build(batch, shapes, kind, rho, seed):
    gen = torch.Generator().manual_seed(seed)
    sizes = [int(torch.Size(s).numel()) for s in shapes]
    dim = sum(sizes)
    w = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    w = rho * w / torch.linalg.matrix_norm(w, ord=2)
    x = torch.randn(batch, dim, generator=gen, dtype=torch.float64)

    def to_flat(state):
        parts = [state] if kind == "tensor" else (list(state.values()) if kind == "dict" else list(state))
        return torch.cat([p.reshape(batch, -1) for p in parts], dim=1)

    def from_flat(flat):
        if kind == "tensor" and len(shapes) == 1:
            return flat.reshape(batch, *shapes[0])
        parts = [p.reshape(batch, *s) for p, s in zip(torch.split(flat, sizes, dim=1), shapes)]
        if kind == "dict":
            return {f"p{i}": p for i, p in enumerate(parts)}
        return tuple(parts)

    if kind == "tensor" and len(shapes) > 1:
        shapes[:] = [(dim,)]
        sizes[:] = [dim]

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
