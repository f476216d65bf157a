"""Which process this is in a ``torch.distributed`` job (one process = world of one).

Every other module asks here, so the library API works unchanged in a single process and
under a process group initialised by the user or by ``torchrun``.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch
import torch.distributed as dist


def active() -> bool:
    """A process group with more than one process is initialised."""
    return world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0: the only process that writes checkpoints and reports, and prints progress."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ


@contextlib.contextmanager
def torchrun_job(device: str) -> Iterator[str]:
    """Inside ``torchrun``: join its process group for the duration and yield this rank's
    device; otherwise yield ``device`` unchanged."""
    if not launched_by_torchrun():
        yield device
        return
    joined = not dist.is_initialized()
    device = init_from_environment(device)
    try:
        yield device
    finally:
        if joined:
            dist.destroy_process_group()


def init_from_environment(device: str) -> str:
    """Join the ``torchrun`` job described by the environment; returns this rank's device.

    ``auto``/``cuda`` become ``cuda:LOCAL_RANK`` (one GPU per process, NCCL); otherwise the
    processes share the CPU over gloo.
    """
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if device not in ("auto", "cuda"):
            raise ValueError(
                f"under torchrun each process takes the GPU of its local rank; use --device cuda or auto, not {device!r}"
            )
        device = f"cuda:{local_rank}"
    elif device == "auto":
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return device
