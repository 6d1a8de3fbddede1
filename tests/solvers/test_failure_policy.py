"""Non-convergence, non-finite maps and bad input: loud and specific, never silent."""

import math

import pytest
import torch

import solvers


def slow(z):
    return 0.999 * z + 1.0


Z0 = torch.zeros(3, 4, dtype=torch.float64)


def test_non_convergence_warns_by_default():
    with pytest.warns(solvers.ConvergenceWarning, match="3 of 3 samples above tol"):
        _, info = solvers.fixed_point(slow, Z0, forward="iterate", backward="onestep", tol=1e-8, max_iter=5)
    assert not info.converged.any()


def test_non_convergence_raise_and_ignore():
    with pytest.raises(solvers.ConvergenceError, match="max_iter"):
        solvers.fixed_point(slow, Z0, forward="iterate", backward="onestep", tol=1e-8, max_iter=5, on_fail="raise")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, info = solvers.fixed_point(slow, Z0, forward="iterate", backward="onestep", tol=1e-8, max_iter=5,
                                      on_fail="ignore")
    assert not info.converged.any()


def test_adjoint_non_convergence_warns_with_its_residual():
    w = torch.tensor(0.99, dtype=torch.float64, requires_grad=True)
    z, info = solvers.fixed_point(lambda z: w * z + 1.0, Z0, forward="broyden",
                                  backward=solvers.Implicit(solver="iterate", tol=1e-12, max_iter=3), tol=1e-10)
    with pytest.warns(solvers.ConvergenceWarning, match="adjoint solve"):
        z.sum().backward()
    assert not info.backward.converged.any() and info.backward.nfe == 3


def test_nonfinite_raises_naming_the_step():
    def blows_up(z):
        return z * 10.0 + 1.0

    with pytest.raises(solvers.NonFiniteError, match=r"step \d+ for batch sample"):
        solvers.fixed_point(blows_up, torch.zeros(2, 3), forward="iterate", backward="onestep", max_iter=200)


def test_nonfinite_best_returns_best_finite_flagged():
    def one_sample_nans(z):
        out = 0.5 * z + 1.0
        return torch.cat([out[:1], out[1:] + torch.where(z[1:] > 1.5, math.nan, 0.0)])

    with pytest.warns(solvers.ConvergenceWarning, match="hit NaN/Inf"):
        z, info = solvers.fixed_point(one_sample_nans, Z0, forward="iterate", backward="onestep", tol=1e-10,
                                      max_iter=100, nonfinite="best")
    assert torch.isfinite(z).all()
    assert info.converged.tolist() == [True, False, False]
    assert info.nonfinite.tolist() == [False, True, True]


@pytest.mark.parametrize("kwargs, error, pattern", [
    ({"forward": "newton"}, ValueError, "unknown forward solver 'newton'; pass one of 'iterate'"),
    ({"backward": "adjoint"}, ValueError, "unknown backward mode 'adjoint'"),
    ({"tol": -1.0}, ValueError, "tol must be a finite number >= 0"),
    ({"tol": "small"}, TypeError, "tol must be a number"),
    ({"max_iter": 0}, ValueError, "max_iter must be >= 1"),
    ({"max_iter": 2.5}, TypeError, "max_iter must be an int"),
    ({"stop_mode": "max"}, ValueError, "stop_mode must be one of 'abs', 'rel'"),
    ({"on_fail": "quiet"}, ValueError, "on_fail must be one of"),
    ({"nonfinite": "zero"}, ValueError, "nonfinite must be one of"),
    ({"mem": 3}, TypeError, "unexpected keyword"),
])
def test_bad_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        solvers.fixed_point(torch.cos, torch.zeros(2, 2), **kwargs)


def test_unknown_option_names_valid_ones():
    with pytest.raises(TypeError,
                       match=r"'mem' \(did you mean 'memory'\?\); valid options are: memory, ridge, damping"):
        solvers.Anderson(mem=3)
    with pytest.raises(TypeError, match="valid options are: terms"):
        solvers.Neumann(k=3)
    with pytest.raises(ValueError, match="Implicit solver must be one of"):
        solvers.Implicit(solver="lbfgs")
    with pytest.raises(ValueError, match="damping must be in"):
        solvers.Phantom(damping=0.0)
    with pytest.raises(ValueError, match="memory must be >= 1"):
        solvers.Broyden(memory=0)


def test_map_changing_structure_or_shape_is_an_error():
    with pytest.raises(ValueError, match="same structure and shapes.*Tensor\\(2, 3\\).*Tensor\\(2, 4\\)"):
        solvers.fixed_point(lambda z: torch.cat([z, z[:, :1]], 1), torch.zeros(2, 3), backward="onestep")
    with pytest.raises(ValueError, match="same structure"):
        solvers.fixed_point(lambda s: (s[0],), (torch.zeros(2, 3), torch.zeros(2, 1)), backward="onestep")
    with pytest.raises(TypeError, match="changed dtype"):
        solvers.fixed_point(lambda z: z.double(), torch.zeros(2, 3), backward="onestep")


@pytest.mark.parametrize("state, error, pattern", [
    (torch.tensor(1.0), ValueError, "leading batch dimension"),
    ((torch.zeros(2, 3), torch.zeros(3, 3)), ValueError, "share the batch dimension"),
    ((torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.float64)), TypeError, "share dtype and device"),
    (torch.zeros(2, 3, dtype=torch.long), TypeError, "floating"),
    ([1.0, 2.0], TypeError, "must be a tensor"),
    ((), ValueError, "at least one tensor"),
    ("z", TypeError, "a state must be a tensor"),
])
def test_bad_states(state, error, pattern):
    with pytest.raises(error, match=pattern):
        solvers.fixed_point(lambda z: z, state)


def test_not_callable():
    with pytest.raises(TypeError, match="f must be callable"):
        solvers.fixed_point(3, torch.zeros(1, 1))


def test_warnings_name_the_callers_line_and_suggest_another_solver():
    # A warning that points into solvers/ (or torch's autograd) tells the user nothing: each names the line of
    # the user's own call, also through the decorator and from loss.backward() for the adjoint solve.
    a = torch.tensor(0.99, requires_grad=True)
    with pytest.warns(solvers.ConvergenceWarning) as caught:
        solvers.fixed_point(lambda z: a * torch.cos(z), torch.zeros(2, 1), forward="anderson", tol=1e-12,
                            max_iter=2)
    assert caught[0].filename == __file__
    assert "try forward='broyden'," in str(caught[0].message)  # not the solver that just failed
    z, _ = solvers.fixed_point(lambda z: a * torch.cos(z), torch.zeros(2, 1), tol=1e-4, max_iter=200,
                               backward=solvers.Implicit(max_iter=1, tol=1e-12))
    with pytest.warns(solvers.ConvergenceWarning, match="adjoint") as caught:
        z.sum().backward()
    assert caught[0].filename == __file__

    class Layer(torch.nn.Module):
        @solvers.implicit(forward="iterate", tol=1e-12, max_iter=2)
        def step(self, z, x):
            return torch.cos(z) * x

    with pytest.warns(solvers.ConvergenceWarning) as caught:
        Layer().step(torch.zeros(2, 1), torch.ones(2, 1))
    assert caught[0].filename == __file__
    assert "try forward='anderson' or 'broyden'," in str(caught[0].message)
