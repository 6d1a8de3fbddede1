"""Outputs require grad exactly when something the map closes over does (or z0, for unrolled)."""

import pytest
import torch

import solvers

MODES = [solvers.Unrolled(), solvers.Implicit(), solvers.Implicit(solver="gmres"), solvers.Neumann(terms=3),
         solvers.Neumann(terms=1), solvers.OneStep(), solvers.Phantom(steps=2)]
IDS = ["unrolled", "implicit", "implicit-gmres", "neumann3", "neumann1", "onestep", "phantom"]


def _solve(f, z0, backward, **kw):
    return solvers.fixed_point(f, z0, forward="anderson", backward=backward, tol=1e-10, max_iter=100, **kw)


@pytest.mark.parametrize("backward", MODES, ids=IDS)
def test_plain_numerics_give_plain_tensors(backward):
    z, info = _solve(torch.cos, torch.zeros(3, 2, dtype=torch.float64), backward)
    assert not z.requires_grad and z.grad_fn is None
    assert z.numpy() == pytest.approx(0.7390851332151607)  # Dottie number, as a new user would check it
    for t in (info.residual, info.converged, info.trace, info.nonfinite):
        assert not t.requires_grad


@pytest.mark.parametrize("backward", MODES, ids=IDS)
def test_closure_requiring_grad_gives_gradient(backward):
    a = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    z, _ = _solve(lambda z: a * torch.cos(z), torch.zeros(2, 1, dtype=torch.float64), backward)
    assert z.requires_grad
    z.sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad) and a.grad != 0


@pytest.mark.parametrize("backward", MODES, ids=IDS)
def test_no_grad_gives_no_graph_even_with_parameters(backward):
    a = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        z, _ = _solve(lambda z: a * torch.cos(z), torch.zeros(2, 1, dtype=torch.float64), backward)
    assert not z.requires_grad and z.grad_fn is None


@pytest.mark.parametrize("backward", MODES, ids=IDS)
def test_z0_requiring_grad_matters_only_when_unrolled(backward):
    z0 = torch.zeros(2, 1, dtype=torch.float64, requires_grad=True)
    z, _ = _solve(torch.cos, z0, backward)
    assert z.requires_grad == isinstance(backward, solvers.Unrolled)


@pytest.mark.parametrize("backward", MODES, ids=IDS)
def test_structured_state_and_non_leaf_closure(backward):
    a = torch.tensor([0.3, 0.6], dtype=torch.float64, requires_grad=True)
    b = a * 2  # a non-leaf tensor the map closes over (like keys computed by an encoder)
    state = {"u": torch.zeros(2, 1, dtype=torch.float64), "v": torch.zeros(2, 1, dtype=torch.float64)}
    z, _ = _solve(lambda s: {"u": torch.cos(s["v"]), "v": 0.5 * torch.sin(s["u"])}, state, backward)
    assert not z["u"].requires_grad and not z["v"].requires_grad
    z, _ = _solve(lambda s: {"u": torch.cos(s["v"]) * b[:, None], "v": 0.5 * torch.sin(s["u"])}, state, backward)
    assert z["u"].requires_grad and z["v"].requires_grad


@pytest.mark.parametrize("backward", MODES, ids=IDS)
def test_map_that_ignores_the_state(backward):
    # J = 0: z* = c, dz*/dc = 1 in every mode but phantom, whose damped steps give 1 - (1 - tau)^k
    c = torch.tensor([[0.25]], dtype=torch.float64, requires_grad=True)
    z, _ = _solve(lambda z: c.expand_as(z) * 1.0, torch.zeros(1, 1, dtype=torch.float64), backward)
    z.sum().backward()
    expected = 1 - (1 - backward.damping) ** backward.steps if isinstance(backward, solvers.Phantom) else 1.0
    assert c.grad.item() == pytest.approx(expected)


@pytest.mark.parametrize("backward", ["unrolled", "implicit", "neumann", "onestep", "phantom"])
def test_decorator_follows_the_same_rule(backward):
    @solvers.implicit(forward="anderson", backward=backward, tol=1e-10, max_iter=100)
    def step(z, x):
        return torch.cos(z) * x

    x = torch.ones(2, 1, dtype=torch.float64)
    assert not step(torch.zeros(2, 1, dtype=torch.float64), x).requires_grad
    x.requires_grad_()
    assert step(torch.zeros(2, 1, dtype=torch.float64), x).requires_grad


@pytest.mark.parametrize("forward", [solvers.Iterate(keep="last"), solvers.Anderson(), solvers.Broyden()],
                         ids=["iterate", "anderson", "broyden"])
@pytest.mark.parametrize("backward", MODES, ids=IDS)
@pytest.mark.parametrize("frozen", [True, False], ids=["frozen", "trainable"])
def test_the_value_does_not_depend_on_the_grad_mode(backward, forward, frozen):
    # A fixed, small number of steps (far from the fixed point) shows every application of f: the modes other
    # than unrolled apply f once more (phantom: its damped steps) under no_grad too, so a model trained with
    # T + 1 applications is evaluated with T + 1.
    torch.manual_seed(0)
    w = torch.nn.Parameter(0.8 * torch.randn(4, 4, dtype=torch.float64) / 2, requires_grad=not frozen)
    x = torch.randn(3, 4, dtype=torch.float64)
    f = lambda z: torch.tanh(z @ w + x)  # noqa: E731
    z0 = torch.zeros(3, 4, dtype=torch.float64)
    for max_iter in (1, 3):
        kw = dict(forward=forward, backward=backward, tol=None, max_iter=max_iter)
        with_grad, _ = solvers.fixed_point(f, z0, **kw)
        with torch.no_grad():
            without, _ = solvers.fixed_point(f, z0, **kw)
        # (unrolled Anderson / Broyden take the torch path under autograd, NumPy without: rounding apart)
        assert torch.allclose(with_grad.detach(), without, atol=1e-13, rtol=0), max_iter
    if isinstance(forward, solvers.Iterate):
        with torch.no_grad():
            plain = z0
            for _ in range(3):
                plain = f(plain)
            if isinstance(backward, solvers.Phantom):
                for _ in range(backward.steps):
                    plain = (1 - backward.damping) * plain + backward.damping * f(plain)
            elif not isinstance(backward, solvers.Unrolled):
                plain = f(plain)
        assert torch.allclose(without, plain, atol=1e-14, rtol=0)
