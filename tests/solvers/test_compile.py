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


# --- fixed_point(..., compile=...) ------------------------------------------------------------------------------

MODES = [solvers.Unrolled(), solvers.Implicit(solver="iterate", tol=None, max_iter=4), solvers.Neumann(terms=2),
         solvers.OneStep(), solvers.Phantom(steps=2)]
MODE_IDS = ["unrolled", "implicit", "neumann", "onestep", "phantom"]


class Counting:
    """A torch.compile backend that counts the graphs it is given and runs them as traced (no codegen)."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def _solve(lin, x, backward, compile, forward=None, tol=None, max_iter=6):
    z, info = solvers.fixed_point(lambda z, x: torch.tanh(lin(z) + x), torch.zeros_like(x), args=(x,),
                                  forward=forward or solvers.Iterate(keep="last"), backward=backward, tol=tol,
                                  max_iter=max_iter, compile=compile)
    return z, info


@pytest.mark.parametrize("backward", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("loop", [True, False], ids=["whole-loop", "map-only"])
def test_compile_option_matches_eager_values_gradients_and_statistics(compile_fn, backward, loop):
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 5).double()
    with torch.no_grad():
        lin.weight.mul_(0.5 / torch.linalg.matrix_norm(lin.weight, ord=2))
    x = torch.randn(4, 5, dtype=D)
    results = []
    for compile in (False, solvers.Compile(backend=BACKEND, loop=loop)):
        lin.zero_grad()
        xi = x.clone().requires_grad_()
        z, info = _solve(lin, xi, backward, compile)
        assert z.requires_grad
        z.pow(2).sum().backward()
        results.append((z.detach(), xi.grad, lin.weight.grad.clone(), info))
    (z0, gx0, gw0, info0), (z1, gx1, gw1, info1) = results
    for a, b in ((z0, z1), (gx0, gx1), (gw0, gw1), (info0.trace, info1.trace), (info0.residual, info1.residual)):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)
    assert (info1.nfe, info1.steps, info1.solver) == (info0.nfe, info0.steps, info0.solver) == (6, 6, "iterate")
    assert info1.trace.shape == (6, 4) and bool(info1.converged.all()) and not bool(info1.nonfinite.any())
    assert not info1.trace.requires_grad


def test_whole_loop_is_one_graph_and_fresh_lambdas_reuse_it(compile_fn):
    torch.manual_seed(0)
    lin = torch.nn.Linear(5, 5).double()
    x = torch.randn(4, 5, dtype=D)
    counting = Counting()
    option = solvers.Compile(backend=counting)
    with torch.no_grad():
        for _ in range(3):  # a new lambda per call, as inside a layer's forward
            _solve(lin, x, "onestep", option)
    # the 6-step loop: one graph, compiled once, no break inside; then onestep's compiled f (applied under
    # no_grad too, so that the value does not depend on the grad mode): one more
    assert counting.graphs == 2
    with torch.no_grad():
        _solve(lin, x, "onestep", option, max_iter=7)  # another length is another graph
    assert counting.graphs == 3
    _solve(lin, x, "onestep", option, max_iter=7)  # with grad: the same loop, then f compiled with grad
    assert counting.graphs == 4
    counting.graphs = 0
    with torch.no_grad():  # not a fixed length: the map alone is compiled, the solver stays in Python
        _, info = _solve(lin, x, "onestep", solvers.Compile(backend=counting), forward="anderson", tol=1e-8,
                         max_iter=40)
    assert counting.graphs >= 1 and info.nfe > 1 and bool(info.converged.all())


def test_compiled_loop_reports_nonfinite_at_its_step(compile_fn):
    def breaks(z, x):
        return torch.where(z > 2.5, z * float("nan"), z + x)  # 1 -> 2 -> 3 -> NaN at step 3

    messages = []
    for compile in (False, solvers.Compile(backend=BACKEND)):
        with pytest.raises(solvers.NonFiniteError, match=r"at step 3 for batch sample\(s\) \[0, 1\]") as err:
            solvers.fixed_point(breaks, torch.ones(2, 3, dtype=D), args=(torch.ones(2, 3, dtype=D),),
                                forward=solvers.Iterate(keep="last"), backward="onestep", tol=None, max_iter=4,
                                compile=compile)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_compile_through_the_decorator(compile_fn):
    class Step(torch.nn.Module):
        def __init__(self, compile):
            super().__init__()
            torch.manual_seed(0)
            self.lin = torch.nn.Linear(5, 5).double()
            self.solve = solvers.implicit(self.one, forward=solvers.Iterate(keep="last"), backward="unrolled",
                                          tol=None, max_iter=3, compile=compile)

        def one(self, z, x):
            return torch.tanh(0.5 * self.lin(z) + x)

    x = torch.randn(3, 5, dtype=D)
    eager, compiled = Step(False), Step(solvers.Compile(backend=BACKEND))
    assert torch.allclose(eager.solve(torch.zeros_like(x), x), compiled.solve(torch.zeros_like(x), x), atol=1e-12)


def test_bad_compile_options_say_what_to_pass():
    with pytest.raises(TypeError, match=r"compile must be True, False or a solvers.Compile"):
        solvers.fixed_point(torch.cos, torch.zeros(1, 1), compile="inductor")
    with pytest.raises(TypeError, match="Compile backend must be a torch.compile backend name"):
        solvers.Compile(backend=3)
    with pytest.raises(TypeError, match="unknown option.*'backnd' \\(did you mean 'backend'\\?\\)"):
        solvers.Compile(backnd="inductor")
    with pytest.raises(TypeError, match="compile must be True, False or a solvers.Compile"):
        solvers.implicit(lambda z: z, compile=1)
