"""Multi-process training: 2 CPU processes (gloo, launched by torchrun) equal 1 process on the global batch.

One torchrun launch (tests/deqslots/training/ddp_helper.py) runs every multi-process case; the single-process
references run in this process.
"""

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deqslots.data.batches import BatchStream
from deqslots.training.checkpoint import load_checkpoint
from deqslots.training.distributed import DistContext, env_rank, process_group, resolve_device
from deqslots.slot_attention.module import SlotAttention
from deqslots.training.config import TrainConfig
from deqslots.training.interrupts import StopRequests, TrainingInterrupted
from deqslots.training.loop import train

HELPER = Path(__file__).with_name("ddp_helper.py")
COMMON = dict(data="shapes", config="cpu-small", resolution=16, num_slots=3, batch_size=4, eval_batches=1,
              lr=1e-3, warmup_steps=0, progress=False)


def cli_args(out, steps, **kw):
    values = {**COMMON, "steps": steps, "eval_every": steps, "checkpoint_every": steps, "out": str(out),
              "threads": 1, **kw}
    args = ["train"]
    for key, value in values.items():
        if key == "progress":
            args.append("--no-progress")
        else:
            args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def config(out, steps, **kw):
    return TrainConfig(**{**COMMON, "steps": steps, "eval_every": steps, "checkpoint_every": steps,
                          "out": str(out), **kw})


def losses(out):
    with open(Path(out) / "metrics.csv", newline="") as handle:
        return [float(r["loss"]) for r in csv.DictReader(handle)]


def assert_close_states(a, b, atol=1e-5):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=atol), (key, (a[key] - b[key]).abs().max())


def assert_same_states(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    """Every 2-process run, in one torchrun launch: {name: (exit code, [rank 0 state, rank 1 state])}."""
    root = tmp_path_factory.mktemp("ddp")
    runs = {
        # strong clipping, so the clipped (averaged) gradient is what is compared
        "in": dict(args=cli_args(root / "in", 4, variant="IN", grad_clip=0.05)),
        "vanilla": dict(args=cli_args(root / "vanilla", 3, variant="vanilla")),
        "nan": dict(args=cli_args(root / "nan", 3, variant="IN", on_nonfinite="skip"), nan_at=[1, 1]),
        "stop": dict(args=cli_args(root / "stop", 50, variant="IN"), sigterm_at=[1, 2]),
        "odd": dict(args=cli_args(root / "odd", 2, batch_size=3)),
    }
    spec = root / "spec.json"
    spec.write_text(json.dumps(list(runs.values())))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--standalone", str(HELPER), str(spec), str(root / "result.pt")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = torch.load(root / "result.pt", weights_only=True)
    return root, proc.stdout + proc.stderr, {name: (r["code"], r["states"]) for name, r in zip(runs, results)}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The 1-process references: the IN run for 4 steps, then resumed to 6."""
    root = tmp_path_factory.mktemp("single")
    train(config(root / "in", 4, variant="IN", grad_clip=0.05))
    four = load_checkpoint(root / "in" / "checkpoint.pt")["model"]
    train(config(root / "in", 6, variant="IN", grad_clip=0.05, resume=True))
    return root, four


def test_two_processes_equal_one_process_on_the_global_batch(ddp, single, tmp_path):
    root, _, results = ddp
    code, (rank0, rank1) = results["in"]
    assert code == 0
    assert_same_states(rank0, rank1)  # DDP keeps the replicas identical
    checkpoint = load_checkpoint(root / "in" / "checkpoint.pt")
    assert_same_states(checkpoint["model"], rank0)
    assert checkpoint["world_size"] == 2 and checkpoint["train_config"]["batch_size"] == 4
    assert_close_states(rank0, single[1])
    one = losses(single[0] / "in")[:4]
    assert losses(root / "in") == pytest.approx(one, rel=1e-5)  # rank 0 alone logs: 4 rows, global mean loss
    summary = json.loads((root / "in" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["trained_steps"] == 4
    for name in ("loss_curve.png", "slots.png"):
        assert (root / "in" / name).exists()

    code, (rank0, rank1) = results["vanilla"]
    assert code == 0
    assert_same_states(rank0, rank1)
    train(config(tmp_path / "vanilla", 3, variant="vanilla"))
    assert_close_states(rank0, load_checkpoint(tmp_path / "vanilla" / "checkpoint.pt")["model"])


def test_one_process_resumes_a_two_process_checkpoint(ddp, single, tmp_path):
    root, _, _ = ddp
    run = tmp_path / "in"
    shutil.copytree(root / "in", run)
    train(config(run, 6, variant="IN", grad_clip=0.05, resume=True))
    straight = load_checkpoint(single[0] / "in" / "checkpoint.pt")
    resumed = load_checkpoint(run / "checkpoint.pt")
    assert resumed["step"] == 6 and resumed["world_size"] == 1
    assert_close_states(resumed["model"], straight["model"])
    assert losses(run) == pytest.approx(losses(single[0] / "in"), rel=1e-5)


def test_a_nan_on_one_rank_is_skipped_on_every_rank(ddp):
    root, _, results = ddp
    code, (rank0, rank1) = results["nan"]
    assert code == 0
    assert_same_states(rank0, rank1)
    assert json.loads((root / "nan" / "summary.json").read_text())["skipped_nonfinite_steps"] == 1
    rows = losses(root / "nan")
    assert math.isnan(rows[1]) and all(math.isfinite(x) for x in (rows[0], rows[2]))


def test_a_signal_to_one_rank_stops_every_rank_after_the_same_step(ddp):
    root, _, results = ddp
    code, (rank0, rank1) = results["stop"]
    assert code == 128 + signal.SIGTERM
    assert_same_states(rank0, rank1)
    checkpoint = load_checkpoint(root / "stop" / "checkpoint.pt")
    assert checkpoint["step"] == 3 and len(losses(root / "stop")) == 3
    assert_same_states(checkpoint["model"], rank0)


def test_batch_size_must_divide_among_the_processes(ddp):
    _, output, results = ddp
    assert results["odd"][0] == 2
    assert "batch_size 3 is not divisible by the world size 2" in output


def test_rank_shares_make_up_the_global_batch():
    whole = BatchStream("shapes", "train", 16, 6, seed=3).batch(5)["image"]
    shares = [BatchStream("shapes", "train", 16, 6, seed=3, rank=r, world_size=3).batch(5)["image"] for r in range(3)]
    assert all(s.shape[0] == 2 for s in shares)
    assert torch.equal(torch.cat(shares), whole)
    with pytest.raises(ValueError, match="not divisible by the world size 4"):
        BatchStream("shapes", "train", 16, 6, seed=3, rank=0, world_size=4)


def test_slot_noise_shards_are_rows_of_the_global_draw():
    sa = SlotAttention(in_dim=8, slot_dim=4, num_slots=3)
    torch.manual_seed(0)
    whole = sa.initial_slots(6)
    after = torch.get_rng_state()
    for start in (0, 2, 4):
        torch.manual_seed(0)
        assert torch.equal(sa.initial_slots(2, shard=(start, 6)), whole[start:start + 2])
        assert torch.equal(torch.get_rng_state(), after)  # the RNG moves as in the single-process run
    with pytest.raises(ValueError, match="does not hold"):
        sa.initial_slots(2, shard=(5, 6))


def test_without_torchrun_there_is_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    with process_group("cpu") as dist:
        assert dist == DistContext() and dist.is_main and not dist.enabled
        assert dist.main_first(lambda: 7) == 7 and dist.broadcast_object("x") == "x"
        assert torch.equal(dist.all_reduce_sum(torch.ones(2)), torch.ones(2, dtype=torch.float64))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match="inconsistent"):
        with process_group("cpu"):
            pass


def test_env_rank_names_a_rank_that_is_not_an_integer(monkeypatch):
    # int(os.environ["RANK"]) gave "invalid literal for int() with base 10: 'zero'"
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ValueError, match=r"environment variable RANK='zero' is not an integer; launch with torchrun"):
        env_rank()
    monkeypatch.setenv("RANK", "3")
    assert env_rank() == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a machine without CUDA")
def test_cuda_asked_for_without_cuda_says_what_to_do():
    with pytest.raises(ValueError, match="CUDA is not available.*--device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        TrainConfig(device="tpu")


def test_repeated_signals_are_absorbed_under_torchrun():
    with StopRequests(absorb_repeats=True) as stop:
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # torchrun's forwarded copy of a terminal's Ctrl-C
        assert stop.signal == signal.SIGINT


def test_training_interrupted_keeps_the_run_folder():
    # out was only named in the message, not kept like step and signum
    err = TrainingInterrupted(12, signal.SIGINT, Path("runs/a"))
    assert (err.step, err.signum, err.out) == (12, signal.SIGINT, Path("runs/a"))
    assert str(Path("runs/a")) in str(err)
