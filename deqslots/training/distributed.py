"""Process groups for multi-process training with PyTorch's own engine (torchrun + DistributedDataParallel).

``torchrun --nproc_per_node=N -m deqslots train ...`` starts N copies of the command with RANK, WORLD_SIZE,
LOCAL_RANK (and MASTER_ADDR / MASTER_PORT) in their environment. :func:`process_group` reads them, picks
the device and the backend that goes with it (NCCL on GPUs, gloo on CPUs), joins the group and leaves it
on exit. Without those variables it yields a one-process context whose collectives do nothing, so the
training loop has one code path. Nothing is kept at module level: everything lives in the
:class:`DistContext` the context manager yields.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, TypeVar

import torch
import torch.distributed as dist

__all__ = ["DistContext", "process_group", "resolve_device", "env_rank", "DEVICES"]

DEVICES = ("auto", "cpu", "cuda")
T = TypeVar("T")


def env_rank() -> int:
    """This process's global rank as torchrun set it (0 when not launched by torchrun).

    Usable before the process group exists (e.g. to let only rank 0 print while arguments are parsed).

    Returns:
        The ``RANK`` environment variable as an int, 0 when it is not set.

    Raises:
        ValueError: when ``RANK`` is set but is not an integer (the message names it).

    Examples:
        >>> import os
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"RANK": "3"}):  # as torchrun sets it for the fourth process
        ...     print(env_rank())
        3
        >>> with mock.patch.dict(os.environ):  # a plain python process
        ...     _ = os.environ.pop("RANK", None)
        ...     print(env_rank())
        0
    """
    return _env_int("RANK", 0)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer; launch with torchrun, "
                         f"which sets RANK, WORLD_SIZE and LOCAL_RANK") from None


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device for ``--device`` (auto | cpu | cuda): with several local processes, GPU ``local_rank``.

    Args:
        name: "auto" (CUDA when available, else CPU), "cpu" or "cuda".
        local_rank: this process's index on its machine (torchrun's LOCAL_RANK).

    Returns:
        The ``torch.device`` to train on.

    Raises:
        ValueError: an unknown name, CUDA asked for but unavailable, or fewer GPUs than local processes.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("auto").type in ("cpu", "cuda")
        True
        >>> resolve_device("tpu")
        Traceback (most recent call last):
        ...
        ValueError: device must be one of auto, cpu, cuda; got 'tpu'
    """
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}; got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(
            f"--device cuda was asked for, but CUDA is not available to torch {torch.__version__} "
            f"(CUDA build: {torch.version.cuda or 'none'}); install a CUDA build of torch and check the "
            "driver (nvidia-smi), or pass --device cpu (or auto)"
        )
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ValueError(f"local rank {local_rank} has no GPU: this machine has {count}; start at most {count} "
                         "processes per node (torchrun --nproc_per_node) or pass --device cpu")
    return torch.device("cuda", local_rank)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the run: its rank, the world size, its device, and collectives.

    With ``world_size == 1`` every collective is the identity, so callers need no special case.

    Attributes:
        rank: global rank (0 logs and checkpoints).
        world_size: number of processes.
        local_rank: index on this machine (selects the GPU).
        device: the device this process trains on.
        backend: "nccl", "gloo", or None for a single process.
        launched: True under torchrun (even with one process).

    Examples:
        >>> import torch
        >>> ctx = DistContext()  # one process: what process_group yields outside torchrun
        >>> ctx.is_main, ctx.enabled
        (True, False)
        >>> ctx.all_reduce_sum(torch.tensor([1.5, 2.0]))
        tensor([1.5000, 2.0000], dtype=torch.float64)
        >>> ctx.broadcast_object({"step": 3}), ctx.main_first(lambda: "checked")
        ({'step': 3}, 'checked')
        >>> ctx.wrap(torch.nn.Linear(2, 2))  # no DistributedDataParallel for one process
        Linear(in_features=2, out_features=2, bias=True)
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: Optional[str] = None
    launched: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes logs, figures and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """More than one process: collectives really communicate."""
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if not self.enabled:
            return
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks of a small float tensor (returned on CPU, float64).

        Args:
            values: this rank's tensor, on any device (detached; the same shape on every rank).

        Returns:
            The sum over ranks, a float64 CPU tensor of ``values``'s shape (``values`` itself, converted, for one
                process).
        """
        if not self.enabled:
            return values.detach().to("cpu", torch.float64)
        # gloo reduces CPU tensors, NCCL device tensors; float64 keeps the sum of per-rank means exact enough
        buffer = values.detach().to(self.device, torch.float64)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        return buffer.cpu()

    def broadcast_object(self, obj: Any = None) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; for small objects such as configs and summaries).

        Every rank must call it; the other ranks' ``obj`` is ignored.

        Args:
            obj: rank 0's object (picklable); other ranks may pass None.

        Returns:
            Rank 0's ``obj`` (a copy on the other ranks; ``obj`` itself for one process).
        """
        if not self.enabled:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 and give every rank its result, or raise its exception on every rank.

        Used for what only rank 0 may do (check the run folder, read the checkpoint: on several machines
        the other ranks may not even see the file) without leaving the others waiting on an error.

        Args:
            fn: called with no arguments on rank 0 only; its result and exception must be picklable.

        Returns:
            What ``fn`` returned on rank 0, on every rank.

        Raises:
            Exception: the exception ``fn`` raised on rank 0 (the same type), on every rank.
        """
        if not self.enabled:
            return fn()
        payload: Any = None
        if self.is_main:
            try:
                payload = (True, fn())
            except Exception as err:  # re-raised below, on every rank
                payload = (False, err)
        ok, value = self.broadcast_object(payload)
        if not ok:
            raise value
        return value

    def wrap(self, model: torch.nn.Module, find_unused_parameters: bool = False) -> torch.nn.Module:
        """``model`` in DistributedDataParallel (gradients averaged over ranks), or itself for one process.

        Args:
            model: the model, already on ``self.device``.
            find_unused_parameters: parameters may get no gradient (the initial-slot mean and sigma under
                the implicit variants), so DDP must look for them instead of waiting for them.

        Returns:
            The module to call in training; save and evaluate ``model`` itself.
        """
        if not self.enabled:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids,
                                                         find_unused_parameters=find_unused_parameters)


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[DistContext]:
    """Join the torchrun process group (if launched by torchrun) for the duration of the block.

    Reads RANK, WORLD_SIZE and LOCAL_RANK; chooses NCCL for CUDA devices and gloo for the CPU. A group
    that is already initialised (by the caller) is used as it is and left open on exit; one created
    here is destroyed on exit.

    Args:
        device: "auto" | "cpu" | "cuda" (see :func:`resolve_device`).

    Yields:
        The :class:`DistContext` of this process.

    Raises:
        ValueError: for RANK / WORLD_SIZE / LOCAL_RANK that are not integers or are inconsistent, a device
            :func:`resolve_device` refuses, or an already initialised group whose rank or size disagrees.

    Examples:
        >>> with process_group("cpu") as dist:  # not under torchrun: one process, no group
        ...     print(dist.world_size, dist.is_main, dist.backend, dist.device)
        1 True None cpu

        Under ``torchrun --nproc_per_node=2`` each process gets its own rank and the gloo backend:

        >>> with process_group("cpu") as dist:  # doctest: +SKIP
        ...     print(dist.rank, dist.world_size, dist.backend)
        0 2 gloo
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    launched = "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world_size} are inconsistent; launch with torchrun")
    target = resolve_device(device, local_rank if world_size > 1 else 0)
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    if world_size == 1:
        yield DistContext(device=target, launched=launched)
        return
    backend = "nccl" if target.type == "cuda" else "gloo"
    if target.type == "cuda":
        torch.cuda.set_device(target)  # NCCL and broadcast_object_list use the current device
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend=backend, init_method="env://")
    else:
        backend = dist.get_backend()
        if dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise ValueError(f"an initialised process group (rank {dist.get_rank()} of {dist.get_world_size()}) "
                             f"disagrees with RANK={rank}, WORLD_SIZE={world_size}")
    try:
        yield DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=target,
                          backend=backend, launched=True)
    finally:
        if created:
            dist.destroy_process_group()
