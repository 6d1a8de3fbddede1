"""One lever at a time: a short training loop of the object-discovery autoencoder with any config change.

The lever table of BENCHMARKS.md ("Objects, not colours") was made with this loop. It trains
:class:`deqslots.SlotAutoencoder` from a named config with ``FIELD=VALUE`` changes (any
:class:`deqslots.autoencoder.AutoencoderConfig` field, values as Python literals) on a pool of generated
training images held in memory, and prints validation MSE and FG-ARI (256 fixed val scenes) every
``--every`` steps, so that two configurations can be compared at equal steps in minutes. The loss is the
model's own :meth:`~deqslots.SlotAutoencoder.loss` (so ``attention_guidance_steps`` applies).

Usage::

    python -m benchmarks.discovery_levers --data same-hue --steps 4000 config=cpu-objects
    python -m benchmarks.discovery_levers --data shapes config=cpu-objects attention_guidance_steps=0 iters=7
    python -m benchmarks.discovery_levers --data shapes config=cpu-objects decoder_position_frequencies=3 broadcast=16

For a run with checkpoints, resume and figures use ``deqslots train``; this loop is for sweeps.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from typing import Any, Optional, Sequence

import torch

from deqslots.autoencoder import SlotAutoencoder, config_for
from deqslots.data import generate_batch
from deqslots.metrics import fg_ari
from deqslots.schedule import learning_rate

__all__ = ["run_lever", "main"]


def _changes(pairs: Sequence[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq:
            raise ValueError(f"config changes are FIELD=VALUE (e.g. iters=7); got {pair!r}")
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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.discovery_levers", description=__doc__.split("\n")[0])
    parser.add_argument("changes", nargs="*", help="FIELD=VALUE config changes; config=NAME picks the base")
    parser.add_argument("--data", default="same-hue")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--pool", type=int, default=20_000, help="training images generated up front")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the evaluations here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        results = run_lever(args.data, _changes(args.changes), args.steps, args.batch_size, args.lr,
                            args.warmup_steps, args.every, args.pool)
    except ValueError as err:
        print(f"discovery_levers: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
