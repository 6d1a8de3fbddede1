"""Train a tiny DEQ with and without fixed-point correction (supervised intermediate iterates).

    python examples/fixed_point_correction.py             # about half a minute on one CPU core
    python examples/fixed_point_correction.py --steps 100 # quicker

Fixed-point correction (Bai et al., "Deep Equilibrium Optical Flow Estimation", CVPR 2022) adds the loss of
a few intermediate iterates to the loss of the fixed point, each with the gradient of the backward mode.
With ``solvers`` that is ``states=`` on the solve and one line in the loss. The effect shown here: the model
trained with it is already good after a few solver steps, so its answers can be read off early; the
model trained on the fixed point alone needs the full solve. Both use the same data, seed and budget.
"""

from __future__ import annotations

import argparse

import torch

import solvers


class TinyDEQ(torch.nn.Module):
    """z* = tanh(W z* + U x), y = head(z*), fitted to a 2-D regression target."""

    def __init__(self, width: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.inject = torch.nn.Linear(2, width)
        # spectral normalisation keeps the map contractive; computed once per solve (cache_weights)
        self.mix = torch.nn.utils.parametrizations.spectral_norm(torch.nn.Linear(width, width, bias=False))
        self.drop = solvers.SolveDropout(dropout)
        self.head = torch.nn.Linear(width, 1)

    @solvers.implicit(forward="anderson", backward="onestep", tol=1e-4, max_iter=30, return_info=True)
    def step(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.tanh(0.9 * self.mix(self.drop(z)) + u)

    def forward(self, x: torch.Tensor, states: tuple[int, ...] = (), max_iter: int = 30):
        u = self.inject(x)
        solve = self.step.replace(states=states, max_iter=max_iter) if states or max_iter != 30 else self.step
        z, info = solve(torch.zeros_like(u), u)
        return self.head(z), [self.head(s) for s in info.states]


def target(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:])


def train(correction: bool, steps: int, seed: int) -> TinyDEQ:
    torch.manual_seed(seed)
    model = TinyDEQ()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        x = torch.rand(128, 2) * 2 - 1
        y = target(x)
        out, early = model(x, states=(2, 4) if correction else ())
        loss = (out - y).pow(2).mean()
        loss = loss + 0.5 * sum((e - y).pow(2).mean() for e in early)  # the fixed-point correction: one line
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def test_error(model: TinyDEQ, max_iter: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(2048, 2, generator=gen) * 2 - 1
    out, _ = model(x, max_iter=max_iter)
    return float((out - target(x)).pow(2).mean())


def main(argv: list[str] | None = None) -> dict[str, dict[int, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    budgets = (2, 4, 30)
    results = {}
    for name, correction in (("fixed point only", False), ("with correction", True)):
        model = train(correction, args.steps, args.seed)
        results[name] = {k: test_error(model, k, args.seed) for k in budgets}
    print(f"test MSE after k solver steps ({args.steps} training steps, seed {args.seed})")
    print(f"{'':18}" + "".join(f"{'k=' + str(k):>10}" for k in budgets))
    for name, row in results.items():
        print(f"{name:18}" + "".join(f"{row[k]:>10.4f}" for k in budgets))
    return results


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore", solvers.ConvergenceWarning)  # k=2, 4 stop early on purpose
    main()
