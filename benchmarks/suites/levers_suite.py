"""Suite ``levers``: one lever at a time, a short training loop of the object-discovery autoencoder with any
config change: ``python -m benchmarks levers [--data NAME] [--steps N] FIELD=VALUE ...``.

Method: docs/benchmarks/methods.md#levers
"""

from __future__ import annotations

import ast
import time
from types import MappingProxyType
from typing import Any, Sequence

import torch

from benchmarks.suites.common import Option, RunContext, SuiteResult, Table, UsageError
from deqslots.slot_attention.autoencoder import SlotAutoencoder
from deqslots.slot_attention.config import config_for
from deqslots.data import generate_batch
from deqslots.evaluation.metrics import fg_ari
from deqslots.training.schedule import learning_rate

__all__ = ["run_lever", "run", "OPTIONS", "TABLES"]

TABLES = MappingProxyType({"evaluations": ("step", "seconds", "mse", "fg_ari")})


def _changes(pairs: Sequence[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq:
            raise UsageError(f"config changes are FIELD=VALUE (e.g. iters=7); got {pair!r}")
        try:
            changes[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            changes[key] = text
    return changes


@torch.no_grad()
def _validate(model: SlotAutoencoder, images: torch.Tensor, ids: torch.Tensor) -> tuple[float, float]:
    model.eval()
    torch.manual_seed(1)  # the same initial slots at every evaluation
    aris, errors = [], []
    for start in range(0, len(images), 64):
        out = model(images[start:start + 64])
        aris.append(fg_ari(ids[start:start + 64], out["masks"].argmax(dim=1)))
        errors.append(float((out["recon"] - images[start:start + 64]).pow(2).mean()))
    model.train()
    return sum(errors) / len(errors), float(torch.nanmean(torch.cat(aris)))


def run_lever(data: str, changes: dict[str, Any], steps: int = 3000, batch_size: int = 16, lr: float = 6e-4,
              warmup_steps: int = 200, every: int = 500, pool: int = 20_000, resolution: int = 32, seed: int = 0,
              log=print) -> list[dict[str, float]]:
    """Train from ``config_for(changes.pop("config", "cpu-objects"), **changes)`` and return the evaluations.

    Returns:
        One dict per evaluation: ``step``, ``seconds`` (training time so far), ``mse``, ``fg_ari``.
    """
    changes = dict(changes)
    base = changes.pop("config", "cpu-objects")
    changes.setdefault("variant", "IN")
    torch.manual_seed(seed)
    model = SlotAutoencoder(config_for(base, resolution=resolution, **changes))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    train_images, _ = generate_batch(data, pool, split="train", resolution=resolution, seed=seed)
    val_images, val_ids = generate_batch(data, 256, split="val", resolution=resolution, seed=seed)
    draw = torch.Generator().manual_seed(seed)
    results, seconds = [], 0.0
    for step in range(steps + 1):
        if step % every == 0 or step == steps:
            mse, ari = _validate(model, val_images, val_ids)
            results.append(dict(step=step, seconds=round(seconds, 1), mse=mse, fg_ari=ari))
            log(f"step {step:6d}  {seconds:7.0f} s  val MSE {mse:.5f}  FG-ARI {ari:.3f}")
        if step == steps:
            break
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, lr, warmup_steps)
        images = train_images[torch.randint(0, pool, (batch_size,), generator=draw)]
        loss = model.loss(images, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds += time.perf_counter() - start
    return results


OPTIONS = (
    Option("changes", "FIELD=VALUE config changes (AutoencoderConfig fields, Python literals); config=NAME picks the "
           "base (default cpu-objects)", nargs="*"),
    Option("--data", "generator (default same-hue)"),
    Option("--steps", "training steps (default 3000; quick 40)", at_least=1, type=int),
    Option("--batch-size", "default 16", at_least=1, type=int),
    Option("--lr", "default 6e-4", type=float),
    Option("--warmup-steps", "default 200 (capped at --steps)", type=int),
    Option("--every", "steps between evaluations (default 500)", at_least=1, type=int),
    Option("--pool", "training images generated up front (default 20000)", at_least=1, type=int),
)


def run(ctx: RunContext, bar) -> SuiteResult:
    """Train the lever at ``ctx.size`` (or ``--steps``) and evaluate every ``--every`` steps."""
    o = ctx.overrides
    tiny, quick = ctx.size == "tiny", ctx.size == "quick"
    steps = o.get("steps") or (2 if tiny else 40 if quick else 3000)
    settings = {"data": o.get("data") or "same-hue", "steps": steps, "batch_size": o.get("batch_size") or 16,
                "lr": o.get("lr") or 6e-4, "warmup_steps": min(steps, o.get("warmup_steps") or 200),
                "every": o.get("every") or (steps if tiny or quick else 500),
                "pool": o.get("pool") or (16 if tiny else 512 if quick else 20_000)}
    changes = _changes(o.get("changes") or [])
    bar.reset(total=steps)
    try:
        evaluations = run_lever(settings["data"], changes, steps, settings["batch_size"], settings["lr"],
                                settings["warmup_steps"], settings["every"], settings["pool"],
                                log=bar.set_postfix_str)
    except (ValueError, TypeError) as err:  # a config change the model refuses
        raise UsageError(str(err)) from err
    bar.update(steps)
    base = changes.get("config", "cpu-objects")
    result = SuiteResult("levers", {**settings, "changes": changes})
    result.tables["evaluations"] = Table(
        f"{base} with {changes or 'no changes'} on {settings['data']}: validation MSE and FG-ARI on 256 fixed val "
        f"scenes every {settings['every']} steps; batch {settings['batch_size']}, Adam lr {settings['lr']} with "
        f"{settings['warmup_steps']} warm-up steps, training images drawn from a pool of {settings['pool']}; "
        "seconds = training time so far (evaluations excluded).", TABLES["evaluations"])
    for row in evaluations:
        result.tables["evaluations"].add(**row)
    return result
