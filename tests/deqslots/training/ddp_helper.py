"""Run under torchrun by test_distributed.py: ``deqslots train`` runs on every rank, then each rank's parameters.

Usage: ``python -m torch.distributed.run --nproc_per_node=2 tests/deqslots/training/ddp_helper.py SPEC.json RESULT.pt``.
SPEC.json is a list of runs, each ``{"args": [deqslots CLI arguments], "nan_at": [rank, step] or null,
"sigterm_at": [rank, step] or null}``.
The process group is created here, so ``train()`` uses it and leaves it open (and one launch serves several
runs); after each run every rank's final parameters are gathered, and rank 0 saves, per run, the exit code
and the list of the ranks' state dicts to RESULT.pt. ``nan_at`` makes that rank's loss NaN at that 0-based
step only, to check that every rank takes the same decision about it; ``sigterm_at`` sends that rank (only)
a SIGTERM during that step, to check that every rank stops after the same step.
"""

import json
import os
import signal
import sys

import torch
import torch.distributed as dist

import deqslots.training.distributed
import deqslots.training.loop as train_module
from deqslots.cli import main


def run(spec_path: str, result_path: str) -> int:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    models: list[torch.nn.Module] = []
    real_wrap = deqslots.training.distributed.DistContext.wrap
    real_loss = train_module._train_loss

    def capture(self, model, find_unused_parameters=False):
        models.append(model)  # the bare model each rank trains (DDP wraps it)
        return real_wrap(self, model, find_unused_parameters)

    deqslots.training.distributed.DistContext.wrap = capture
    results = []
    for item in json.loads(open(spec_path).read()):
        nan_at = tuple(item["nan_at"]) if item.get("nan_at") else None
        sigterm_at = tuple(item["sigterm_at"]) if item.get("sigterm_at") else None

        def loss_with_nan(model, config, images, step, nan_at=nan_at, sigterm_at=sigterm_at):
            if (rank, step) == sigterm_at:
                os.kill(os.getpid(), signal.SIGTERM)  # through train's own handler, as from a scheduler
            loss, extras = real_loss(model, config, images, step)
            return (loss * float("nan") if (rank, step) == nan_at else loss), extras

        train_module._train_loss = loss_with_nan
        models.clear()
        code = main(item["args"])
        state = {k: v.detach().clone() for k, v in models[-1].state_dict().items()} if models else None
        gathered = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, state)
        results.append({"code": code, "states": gathered})
    if rank == 0:
        torch.save(results, result_path)
    dist.barrier()  # no rank leaves while rank 0 still writes the results
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    code = run(*sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip the interpreter's teardown: gloo's worker threads, still held by the DDP wrappers of the runs,
    # can be destroyed unjoined there, and C++ then aborts the process ("terminate called without an active
    # exception", seen once in CI on a run that had finished and saved its results).
    os._exit(code)
