"""@solvers.implicit: the drop-in for loops over one step."""

import pytest
import torch

import solvers


class LoopModel(torch.nn.Module):
    def __init__(self, iters=5):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(6, 6).double()
        self.iters = iters

    def one_step(self, z, x):
        return torch.tanh(0.5 * self.lin(z) + x)

    def forward(self, x):
        z = torch.zeros_like(x)
        for _ in range(self.iters):
            z = self.one_step(z, x)
        return z


class DecoratedModel(LoopModel):
    @solvers.implicit(forward=solvers.Iterate(keep="last"), backward="unrolled", tol=None, max_iter=5)
    def step(self, z, x):
        return self.one_step(z, x)

    def forward(self, x):
        return self.step(torch.zeros_like(x), x)


def test_method_drop_in_equals_the_loop_values_and_gradients():
    loop, deco = LoopModel(), DecoratedModel()
    deco.load_state_dict(loop.state_dict())
    x = torch.randn(3, 6, dtype=torch.float64)
    a, b = loop(x), deco(x)
    assert torch.equal(a, b)
    a.sum().backward()
    b.sum().backward()
    assert torch.allclose(loop.lin.weight.grad, deco.lin.weight.grad)


def test_function_with_context_and_return_info():
    @solvers.implicit(forward="anderson", backward="implicit", tol=1e-10, return_info=True)
    def step(z, x, scale=0.5):
        return torch.tanh(scale * z + x)

    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    z, info = step(torch.zeros(4, 3, dtype=torch.float64), x, scale=0.3)
    assert info.converged.all() and info.solver == "anderson"
    assert torch.allclose(z, torch.tanh(0.3 * z + x), atol=1e-9)
    z.sum().backward()
    # dz/dx elementwise: s/(1 - 0.3 s) with s = 1 - z^2
    s = 1 - z.detach() ** 2
    assert torch.allclose(x.grad, s / (1 - 0.3 * s), atol=1e-8)


def test_replace_changes_options_and_keeps_binding():
    model = DecoratedModel()
    x = torch.randn(2, 6, dtype=torch.float64)
    longer = model.step.replace(max_iter=50, tol=1e-10, backward="implicit", return_info=True)
    z, info = longer(torch.zeros_like(x), x)
    assert info.converged.all() and info.nfe < 50
    assert model.step.options.max_iter == 5  # the original is untouched
    with pytest.raises(TypeError, match="unknown solve option"):
        model.step.replace(iters=3)
    assert model.step.step is DecoratedModel.__dict__["step"].step  # the raw single step stays reachable


def test_decorator_validates_eagerly():
    with pytest.raises(ValueError, match="unknown forward solver"):
        solvers.implicit(forward="newton")
    with pytest.raises(TypeError):
        solvers.implicit(maxiter=3)
    with pytest.raises(TypeError, match="return_info must be True or False"):
        solvers.implicit(return_info="yes")
