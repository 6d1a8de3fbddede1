"""The autograd cases that hook-based implementations get wrong."""

import gc
import warnings

import pytest
import torch

import solvers


class DEQ(torch.nn.Module):
    def __init__(self, dim=8, backward="implicit", dropout=0.0):
        super().__init__()
        torch.manual_seed(1)
        self.lin = torch.nn.Linear(dim, dim).double()
        with torch.no_grad():
            self.lin.weight.mul_(0.6 / torch.linalg.matrix_norm(self.lin.weight, ord=2))
        self.backward_mode = backward
        self.norm = torch.nn.BatchNorm1d(dim).double()

    def step(self, z, x):
        return torch.tanh(self.lin(z) + x)

    def forward(self, x):
        z, self.info = solvers.fixed_point(lambda z: self.step(z, x), torch.zeros_like(x), forward="broyden",
                                           backward=self.backward_mode, tol=1e-12, max_iter=100)
        return z


def _grads(model, x):
    model.zero_grad()
    x = x.clone().requires_grad_()
    model(x).pow(2).sum().backward()
    return [p.grad.clone() for p in model.lin.parameters()] + [x.grad.clone()]


def test_no_grad_builds_no_graph():
    model = DEQ()
    x = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        z = model(x)
    assert not z.requires_grad and z.grad_fn is None


def test_eval_mode_gradients_equal_train_mode():
    model = DEQ()
    x = torch.randn(4, 8, dtype=torch.float64)
    train = _grads(model.train(), x)
    evaluated = _grads(model.eval(), x)
    for a, b in zip(train, evaluated):
        assert torch.allclose(a, b)


def test_repeated_backward_recomputes_the_adjoint():
    model = DEQ()
    x = torch.randn(4, 8, dtype=torch.float64)
    z = model(x)
    loss = z.pow(2).sum()
    loss.backward(retain_graph=True)
    first = model.lin.weight.grad.clone()
    loss.backward()
    assert torch.allclose(model.lin.weight.grad, 2 * first)
    assert model.info.backward.calls == 2


def test_two_implicit_layers_in_one_graph_and_gradients_to_inputs():
    first, second = DEQ(), DEQ()
    with torch.no_grad():
        second.lin.weight.mul_(0.5)
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    out = second(first(x))
    out.sum().backward()
    got = x.grad.clone()

    def composed(x):
        return second(first(x)).sum()

    # dense check of the input gradient through both layers
    jac = torch.autograd.functional.jacobian(
        lambda x: _exact_solution(second, _exact_solution(first, x)).sum(), x)
    assert torch.allclose(got, jac, atol=1e-9)
    assert first.info.backward is not None and second.info.backward is not None


def _exact_solution(model, x):
    # differentiable reference: many unrolled steps of a contraction
    z = torch.zeros_like(x)
    for _ in range(200):
        z = model.step(z, x)
    return z


def test_layer_called_twice_per_step():
    lin = torch.nn.Linear(6, 6).double()
    with torch.no_grad():
        lin.weight.mul_(0.4 / torch.linalg.matrix_norm(lin.weight, ord=2))
    x = torch.randn(2, 6, dtype=torch.float64)

    def step(z):
        return torch.tanh(lin(torch.tanh(lin(z))) + x)

    z, _ = solvers.fixed_point(step, torch.zeros_like(x), forward="anderson", backward=solvers.Implicit(tol=1e-12),
                               tol=1e-12, max_iter=100)
    z.sum().backward()
    implicit = lin.weight.grad.clone()
    lin.zero_grad()
    h = torch.zeros_like(x)
    for _ in range(100):
        h = step(h)
    h.sum().backward()
    assert torch.allclose(implicit, lin.weight.grad, atol=1e-9)


def test_double_backward_clear_error_for_implicit_and_works_for_onestep():
    d = torch.tensor([[0.3]], dtype=torch.float64, requires_grad=True)
    y, _ = solvers.fixed_point(lambda y: d + y ** 5, torch.zeros_like(d), backward="implicit", tol=1e-12)
    (g,) = torch.autograd.grad(y.sum(), d, create_graph=False)
    y, _ = solvers.fixed_point(lambda y: d + y ** 5, torch.zeros_like(d), backward="implicit", tol=1e-12)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(y.sum(), d, create_graph=True)
    # onestep: y_out = d + y*^5 with y* detached, so d2y/dd2 through it is 0 and grad is 1
    y, _ = solvers.fixed_point(lambda y: d ** 2 + y ** 5, torch.zeros_like(d), backward="onestep", tol=1e-12)
    (g,) = torch.autograd.grad(y.sum(), d, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), d)
    assert g.item() == pytest.approx(0.6) and h.item() == pytest.approx(2.0)


@pytest.mark.parametrize("backward", ["implicit", "onestep", "neumann", "phantom", "unrolled"])
def test_no_memory_growth_across_training_steps(backward):
    model = DEQ(dim=16, backward=backward)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(8, 16, dtype=torch.float64)

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if torch.is_tensor(o))

    counts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(6):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            model.info = None
            counts.append(live_tensors())
    assert counts[-1] == counts[2], counts


def test_gradient_to_parameters_and_inputs_via_module_dropout_free():
    model = DEQ()
    grads = _grads(model, torch.randn(5, 8, dtype=torch.float64))
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_backward_info_readable_after_backward():
    model = DEQ()
    z = model(torch.randn(3, 8, dtype=torch.float64))
    assert model.info.backward is None
    z.sum().backward()
    b = model.info.backward
    assert b.method == "implicit/broyden" and b.nfe >= 1 and b.residual.shape == (3,)
    assert b.converged.all() and (b.residual <= 1e-6).all()
