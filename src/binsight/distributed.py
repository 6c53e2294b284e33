"""Small torch.distributed helpers: one process per rank, started by ``torchrun``.

A process started by ``torchrun`` (or any launcher that sets the same variables: ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) joins a process group with
:func:`init` (or the :func:`session` context manager). Backend: NCCL when the device is a CUDA GPU (one
GPU per local rank), gloo otherwise. A plain ``python`` process, or a ``torchrun`` job with one process,
sets up nothing: every helper then answers as a world of one (``rank() == 0``, ``world_size() == 1``,
``barrier()`` returns at once), so code written with them runs unchanged in a single process.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
import torch.distributed as dist

from binsight import _utils
from binsight.errors import BinsightError

__all__ = [
    "DeviceError",
    "backend_for",
    "barrier",
    "broadcast_int",
    "broadcast_module",
    "cleanup",
    "device_for_rank",
    "init",
    "is_distributed",
    "launched",
    "local_rank",
    "rank",
    "resolve_device",
    "session",
    "sum_over_ranks",
    "world_size",
]


class DeviceError(BinsightError):
    """A device that this machine does not have; the message says what to use instead."""


def launched() -> bool:
    """Whether this process was started by torchrun (or alike) as one of two or more processes."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    """Whether a process group of two or more processes is set up in this process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 in a single process)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes in the group (1 in a single process)."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's rank on its own node: ``LOCAL_RANK`` (else the global rank; 0 in a single process)."""
    if not (is_distributed() or launched()):
        return 0
    return int(os.environ.get("LOCAL_RANK", rank()))


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a CUDA GPU, else ``"cpu"``; other names are checked by
    :func:`binsight._utils.resolve_device`, raising :class:`DeviceError` for a device this machine lacks."""
    return str(_utils.resolve_device(device, error=DeviceError))


def device_for_rank(device: str = "auto") -> str:
    """The device this process computes on: :func:`resolve_device`, and for a bare ``"cuda"`` in a
    distributed run, the GPU of this local rank (``"cuda:LOCAL_RANK"``)."""
    device = resolve_device(device)
    if device == "cuda" and (is_distributed() or launched()):
        device = f"cuda:{local_rank()}"
        return resolve_device(device)
    return device


def backend_for(device: str) -> str:
    """``"nccl"`` for a CUDA device, ``"gloo"`` for anything else."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def init(device: str = "auto") -> str:
    """Join the process group described by torchrun's environment; return this rank's device.

    Does nothing but resolve the device when the process was not launched as one of several, or when a
    process group is already set up. On a CUDA device the current GPU is set to the local rank's.
    """
    device = device_for_rank(device)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if launched() and not dist.is_initialized():
        dist.init_process_group(backend=backend_for(device))
    return device


def cleanup() -> None:
    """Leave the process group (if one is set up); a no-op in a single process."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[str]:
    """``with session(device) as dev:`` -- :func:`init` on entry, :func:`cleanup` on exit if this block
    set the group up (a group that was already there is left as it was)."""
    owned = launched() and not (dist.is_available() and dist.is_initialized())
    dev = init(device)
    try:
        yield dev
    finally:
        if owned:
            cleanup()


def barrier() -> None:
    """Wait until every rank gets here; returns at once in a single process."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def _comm_device() -> str:
    """Where tensors sent by the process group must live: this rank's GPU under NCCL, else the CPU."""
    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"


def broadcast_int(value: int, src: int = 0) -> int:
    """``value`` as rank ``src`` has it, on every rank (sent as a tensor, nothing pickled); ``value`` itself
    in a single process."""
    if not is_distributed():
        return int(value)
    holder = torch.tensor([int(value)], dtype=torch.int64, device=_comm_device())
    dist.broadcast(holder, src=src)
    return int(holder.item())


def sum_over_ranks(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (float64); ``values`` itself in a single process."""
    if not is_distributed():
        return [float(v) for v in values]
    total = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(total)
    return [float(v) for v in total.cpu()]


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers (e.g. batch norm running statistics) into ``module`` on
    every rank, in place; a no-op in a single process."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=src)
