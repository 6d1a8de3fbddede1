"""DEQ-training features: per-solve dropout, weights normalised once per solve, supervised iterates."""

import pytest
import torch

import solvers
from tests.solvers.problems import dense_jacobian

D = torch.float64


def _problem(batch=4, dim=6, seed=0, contraction=0.6):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, dim, generator=gen, dtype=D)
    w = (contraction * w / torch.linalg.matrix_norm(w, ord=2)).requires_grad_()
    x = torch.randn(batch, dim, generator=gen, dtype=D).requires_grad_()
    return w, x


# -- SolveDropout --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backward", ["implicit", "onestep", "phantom", "unrolled"])
def test_dropout_equals_a_solve_with_the_mask_fixed_by_hand(backward):
    w, x = _problem()
    drop = solvers.SolveDropout(0.3)
    torch.manual_seed(5)
    z, info = solvers.fixed_point(lambda z: torch.tanh(drop(z) @ w.T + x), torch.zeros_like(x), forward="broyden",
                                  backward=backward, tol=1e-11, max_iter=60)
    assert info.converged.all()  # a new mask per evaluation would leave no fixed point to converge to
    z.pow(2).sum().backward()
    got = (z.detach(), w.grad.clone(), x.grad.clone())
    w.grad = x.grad = None
    torch.manual_seed(5)  # the mask is the first random draw of the solve
    mask = torch.empty_like(x).bernoulli_(0.7) / 0.7
    ref, _ = solvers.fixed_point(lambda z: torch.tanh((mask * z) @ w.T + x), torch.zeros_like(x), forward="broyden",
                                 backward=backward, tol=1e-11, max_iter=60)
    ref.pow(2).sum().backward()
    for a, b in zip(got, (ref.detach(), w.grad, x.grad)):
        assert torch.allclose(a, b, atol=1e-10)
    assert (mask == 0).any()  # the test would be vacuous without dropped entries


def test_dropout_unrolled_equals_the_loop_with_one_mask():
    w, x = _problem()
    drop = solvers.SolveDropout(0.5)
    torch.manual_seed(1)
    z, _ = solvers.fixed_point(lambda z: torch.tanh(drop(z) @ w.T + x), torch.zeros_like(x),
                               forward=solvers.Iterate(keep="last"), backward="unrolled", tol=None, max_iter=6)
    torch.manual_seed(1)
    mask = torch.empty_like(x).bernoulli_(0.5) / 0.5
    h = torch.zeros_like(x)
    for _ in range(6):
        h = torch.tanh((mask * h) @ w.T + x)
    assert torch.equal(z, h)


def test_dropout_new_mask_per_solve_and_identity_in_eval():
    w, x = _problem()
    drop = solvers.SolveDropout(0.5)

    def solve():
        return solvers.fixed_point(lambda z: torch.tanh(drop(z) @ w.T + x), torch.zeros_like(x), tol=1e-10,
                                   max_iter=100)[0]

    assert not torch.allclose(solve(), solve())
    drop.eval()
    plain, _ = solvers.fixed_point(lambda z: torch.tanh(z @ w.T + x), torch.zeros_like(x), tol=1e-10, max_iter=100)
    assert torch.equal(solve(), plain)
    assert torch.equal(solve(), solve())


def test_dropout_outside_a_solve_is_ordinary_dropout():
    drop = solvers.SolveDropout(0.5)
    x = torch.ones(200, dtype=D)
    a, b = drop(x), drop(x)
    assert not torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 2.0}


def test_dropout_rejects_bad_p_and_a_module_reused_on_another_shape():
    for p in (1.0, -0.1, "0.5", True):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            solvers.SolveDropout(p)
    drop = solvers.SolveDropout(0.5)
    x = torch.zeros(3, 4, dtype=D)
    with pytest.raises(ValueError, match="one SolveDropout module per place"):
        solvers.fixed_point(lambda z: drop(z) + drop(z[:, :2]).sum(1, keepdim=True), x, max_iter=3, on_fail="ignore")


# -- weights normalised once per solve -------------------------------------------------------------------


class _CountingNorm(torch.nn.Module):
    """W / ||W||_F * 0.5, counting how often it is computed."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, weight):
        self.calls += 1
        return 0.5 * weight / torch.linalg.matrix_norm(weight)


def _normed_layer(dim=6):
    torch.manual_seed(0)
    lin = torch.nn.Linear(dim, dim).double()
    norm = _CountingNorm()
    torch.nn.utils.parametrize.register_parametrization(lin, "weight", norm)
    norm.calls = 0  # registration computes it once to check it
    return lin, norm


@pytest.mark.parametrize("backward,expected", [("implicit", 2), ("onestep", 2), ("phantom", 2), ("unrolled", 1)])
def test_parametrized_weight_computed_once_per_solve_phase(backward, expected):
    lin, norm = _normed_layer()
    x = torch.randn(4, 6, dtype=D)
    results = {}
    for cache in (True, False):
        norm.calls = 0
        lin.zero_grad()
        z, info = solvers.fixed_point(lambda z: torch.tanh(lin(z) + x), torch.zeros_like(x), forward="anderson",
                                      backward=backward, tol=1e-10, max_iter=60, cache_weights=cache)
        z.pow(2).sum().backward()
        results[cache] = (z.detach(), lin.parametrizations.weight.original.grad.clone(), lin.bias.grad.clone())
        if cache:
            assert norm.calls == expected  # once for the forward solve, once for the backward mode's f
        else:
            assert norm.calls >= info.nfe > expected
    for a, b in zip(results[True], results[False]):
        assert torch.allclose(a, b, atol=1e-12)


def test_weight_norm_gradient_equals_normalising_by_hand():
    torch.manual_seed(3)
    lin = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(5, 5).double())
    with torch.no_grad():
        lin.parametrizations.weight.original0.mul_(0.4)
    x = torch.randn(3, 5, dtype=D)
    z, _ = solvers.fixed_point(lambda z: torch.tanh(lin(z) + x), torch.zeros_like(x), forward="broyden", tol=1e-11,
                               max_iter=80)
    z.sum().backward()
    g0, v0 = lin.parametrizations.weight.original0, lin.parametrizations.weight.original1
    got = (g0.grad.clone(), v0.grad.clone())
    g = g0.detach().clone().requires_grad_()
    v = v0.detach().clone().requires_grad_()
    weight = g * v / torch.linalg.vector_norm(v, dim=1, keepdim=True)
    ref, _ = solvers.fixed_point(lambda z: torch.tanh(z @ weight.T + lin.bias + x), torch.zeros_like(x),
                                 forward="broyden", tol=1e-11, max_iter=80)
    ref.sum().backward()
    assert torch.allclose(got[0], g.grad, atol=1e-10) and torch.allclose(got[1], v.grad, atol=1e-10)


def test_decorator_caches_weights_too():
    lin, norm = _normed_layer()

    @solvers.implicit(forward="anderson", backward="implicit", tol=1e-10, max_iter=60)
    def step(z, x):
        return torch.tanh(lin(z) + x)

    step(torch.zeros(4, 6, dtype=D), torch.randn(4, 6, dtype=D)).sum().backward()
    assert norm.calls == 2
    norm.calls = 0
    step.replace(cache_weights=False)(torch.zeros(4, 6, dtype=D), torch.randn(4, 6, dtype=D))
    assert norm.calls > 2


# -- supervised intermediate states -------------------------------------------------------------------


def test_states_unrolled_are_the_loop_iterates_with_their_gradients():
    w, x = _problem()
    z, info = solvers.fixed_point(lambda z: torch.tanh(z @ w.T + x), torch.zeros_like(x),
                                  forward=solvers.Iterate(keep="last"), backward="unrolled", tol=None, max_iter=7,
                                  states=(2, 5))
    h, loop = torch.zeros_like(x), {}
    for k in range(1, 8):
        h = torch.tanh(h @ w.T + x)
        loop[k] = h
    assert torch.equal(info.states[0], loop[2]) and torch.equal(info.states[1], loop[5]) and torch.equal(z, loop[7])
    (g,) = torch.autograd.grad(info.states[0].sum(), w)
    (ref,) = torch.autograd.grad(loop[2].sum(), w)
    assert torch.allclose(g, ref)


@pytest.mark.parametrize("backward", ["onestep", "phantom"])
def test_states_get_the_backward_mode_applied_at_them(backward):
    w, x = _problem()
    f = lambda z: torch.tanh(z @ w.T + x)  # noqa: E731
    z, info = solvers.fixed_point(f, torch.zeros_like(x), forward=solvers.Iterate(keep="last"), backward=backward,
                                  tol=None, max_iter=6, states=(3,))
    with torch.no_grad():
        h = torch.zeros_like(x)
        for _ in range(3):
            h = f(h)
    ref = solvers.as_backward(backward).attach(f, h, info, "warn")
    assert torch.allclose(info.states[0], ref)
    (g,) = torch.autograd.grad(info.states[0].pow(2).sum(), w)
    (g_ref,) = torch.autograd.grad(ref.pow(2).sum(), w)
    assert torch.allclose(g, g_ref)


def test_states_implicit_gradient_is_the_ift_gradient_at_that_state():
    w, x = _problem()
    f = lambda z: torch.tanh(z @ w.T + x)  # noqa: E731
    _, info = solvers.fixed_point(f, torch.zeros_like(x), forward=solvers.Iterate(keep="last"),
                                  backward=solvers.Implicit(tol=1e-12, max_iter=100), tol=None, max_iter=8,
                                  states=(4,))
    v = torch.randn_like(x)
    (got,) = torch.autograd.grad(info.states[0], x, v)
    with torch.no_grad():
        h = torch.zeros_like(x)
        for _ in range(4):
            h = f(h)
    jac = dense_jacobian(f, h)  # [B, i, j] = d f_i / d z_j
    eye = torch.eye(x.shape[1], dtype=D)
    g = torch.linalg.solve(eye - jac.transpose(1, 2), v.unsqueeze(2)).squeeze(2)  # g = J^T g + v
    (ref,) = torch.autograd.grad(f(h), x, g)
    assert torch.allclose(got, ref, atol=1e-9)


def test_states_after_convergence_are_the_solution_and_correction_loss_is_one_line():
    w, x = _problem()
    z, info = solvers.fixed_point(lambda z: torch.tanh(z @ w.T + x), torch.zeros_like(x), forward="anderson",
                                  backward="implicit", tol=1e-10, max_iter=100, states=(1, 99))
    assert info.nfe < 99 and torch.allclose(info.states[1], z)
    assert not torch.allclose(info.states[0], z)
    loss = z.pow(2).sum() + sum(s.pow(2).sum() for s in info.states)  # the fixed-point correction loss
    loss.backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_states_structured_state_and_decorator_and_bad_values():
    @solvers.implicit(forward="iterate", backward="onestep", tol=None, max_iter=5, states=(2,), return_info=True)
    def step(s, x):
        return {"a": torch.tanh(0.5 * s["b"] + x), "b": torch.cos(s["a"])}

    x = torch.randn(3, 2, dtype=D)
    z, info = step({"a": torch.zeros(3, 2, dtype=D), "b": torch.zeros(3, 2, dtype=D)}, x)
    assert set(info.states[0]) == {"a", "b"} and info.states[0]["a"].shape == (3, 2)
    with pytest.raises(ValueError, match="1..max_iter=5"):
        solvers.fixed_point(torch.cos, torch.zeros(1, 1), max_iter=5, states=(6,))
    with pytest.raises(ValueError, match="1..max_iter"):
        solvers.implicit(max_iter=5, states=(0,))
    with pytest.raises(TypeError, match="sequence of iterate numbers"):
        solvers.fixed_point(torch.cos, torch.zeros(1, 1), states=5)
    with pytest.raises(TypeError, match="ints"):
        solvers.fixed_point(torch.cos, torch.zeros(1, 1), states=(2.0,))
