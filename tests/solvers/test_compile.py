"""torch.compile of code that calls the solvers gives what eager mode gives, for every backward mode.

The solvers take per-step decisions on the host, so a compiled caller runs with graph breaks; these tests
hold that such a run matches eager (values and gradients). The backend defaults to ``aot_eager`` (dynamo's
tracing and AOTAutograd, no code generation) to keep the suite fast; set
``SOLVERS_COMPILE_BACKEND=inductor`` to check the default backend too. Skipped where torch.compile is
unavailable (e.g. a Python version dynamo does not support).
"""

import os

import pytest
import torch

import solvers

BACKEND = os.environ.get("SOLVERS_COMPILE_BACKEND", "aot_eager")
D = torch.float64


@pytest.fixture(scope="module")
def compile_fn():
    try:
        probe = torch.compile(lambda t: t * 2, backend=BACKEND)
        assert torch.equal(probe(torch.ones(2)), torch.full((2,), 2.0))
    except Exception as err:  # noqa: BLE001 - whatever makes compilation unavailable here
        pytest.skip(f"torch.compile(backend={BACKEND!r}) is unavailable: {err}")
    yield lambda fn: torch.compile(fn, backend=BACKEND)
    torch._dynamo.reset()


class Layer(torch.nn.Module):
    def __init__(self, backward):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(5, 5).double()
        with torch.no_grad():
            self.lin.weight.mul_(0.5 / torch.linalg.matrix_norm(self.lin.weight, ord=2))
        self.backward_mode = backward

    def forward(self, x):
        z, _ = solvers.fixed_point(lambda z: torch.tanh(self.lin(z) + x), torch.zeros_like(x),
                                   forward=solvers.Iterate(keep="last"), backward=self.backward_mode, tol=None,
                                   max_iter=3)
        return z


class Decorated(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(5, 5).double()

    @solvers.implicit(forward=solvers.Iterate(keep="last"), backward="onestep", tol=None, max_iter=3)
    def step(self, z, x):
        return torch.tanh(0.5 * self.lin(z) + x)

    def forward(self, x):
        return self.step(torch.zeros_like(x), x)


def _value_and_grads(model, fn, x):
    model.zero_grad()
    x = x.clone().requires_grad_()
    out = fn(x)
    out.pow(2).sum().backward()
    return [out.detach(), x.grad] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("backward", [solvers.Unrolled(), solvers.Implicit(solver="iterate", tol=None, max_iter=4),
                                      solvers.Neumann(terms=2), solvers.OneStep(), solvers.Phantom(steps=2)],
                         ids=["unrolled", "implicit", "neumann", "onestep", "phantom"])
def test_compiled_matches_eager_for_every_backward_mode(compile_fn, backward):
    model = Layer(backward)
    x = torch.randn(3, 5, dtype=D)
    eager = _value_and_grads(model, model, x)
    compiled = _value_and_grads(model, compile_fn(model), x)
    for a, b in zip(eager, compiled):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)


def test_compiled_decorator_matches_eager(compile_fn):
    model = Decorated()
    x = torch.randn(3, 5, dtype=D)
    eager = _value_and_grads(model, model, x)
    compiled = _value_and_grads(model, compile_fn(model), x)
    for a, b in zip(eager, compiled):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)
