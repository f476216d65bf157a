"""Measured latency: the number that says whether fewer MACs made a model faster.

MAC counts ignore memory traffic, kernel launch overhead and how well a backend uses the
remaining channel counts, so a pruned model can save 75 % of its MACs and run barely
faster at batch 1. These functions time real forward passes: warm-up runs first (allocator,
kernel selection, caches) and are excluded, then the median of the timed runs (robust to
the odd slow run on a shared machine). On CUDA the time is read from CUDA events; on the
CPU the number of threads is stated, since it changes the result.
"""
from __future__ import annotations

import statistics
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from harp_plugin.models.modes import eval_mode


@dataclass(frozen=True)
class Latency:
    """One model's forward time at one batch size."""

    batch: int
    median_ms: float
    repeats: int
    warmup: int
    device: str
    threads: int | None  # CPU intra-op threads; None on CUDA
    timer: str


@dataclass(frozen=True)
class LatencyComparison:
    """Dense vs pruned at one batch size, measured side by side."""

    batch: int
    dense_ms: float
    pruned_ms: float
    repeats: int
    warmup: int
    device: str
    threads: int | None
    timer: str

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.pruned_ms

    def to_dict(self) -> dict:
        return asdict(self) | {"speedup": self.speedup}


def measure_latency(
    model: nn.Module, inputs: torch.Tensor, *, repeats: int = 20, warmup: int = 3, threads: int | None = None
) -> Latency:
    """Median forward time of ``model`` on ``inputs`` (eval mode, no autograd).

    ``inputs`` sit on the model's device; ``threads`` (CPU only) sets the intra-op threads
    for the measurement and restores them after.
    """
    return measure_side_by_side([model], inputs, repeats=repeats, warmup=warmup, threads=threads)[0]


def measure_side_by_side(
    models: Sequence[nn.Module], inputs: torch.Tensor, *, repeats: int = 20, warmup: int = 3,
    threads: int | None = None,
) -> list[Latency]:
    """:func:`measure_latency` of several models (a dense one and its pruned variants, several
    criteria) with their timed runs interleaved, so a load change hits all of them alike."""
    times, setting = _timed_runs(list(models), inputs, repeats, warmup, threads)
    return [Latency(int(inputs.shape[0]), statistics.median(t), repeats, warmup, **setting) for t in times]


def compare_latency(
    dense: nn.Module,
    pruned: nn.Module,
    example: torch.Tensor,
    batches: Sequence[int] = (1, 256),
    *,
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> list[LatencyComparison]:
    """Dense and pruned at each batch size (``example``'s first sample repeated), their runs
    interleaved so that a load change on a shared machine hits both alike."""
    rows = []
    for batch in batches:
        if batch < 1:
            raise ValueError(f"batch sizes must be positive, got {batch}")
        inputs = example[:1].expand(batch, *example.shape[1:]).contiguous()
        first, second = measure_side_by_side([dense, pruned], inputs, repeats=repeats, warmup=warmup, threads=threads)
        rows.append(LatencyComparison(batch, first.median_ms, second.median_ms, repeats, warmup,
                                      first.device, first.threads, first.timer))
    return rows


def _timed_runs(
    models: list[nn.Module], inputs: torch.Tensor, repeats: int, warmup: int, threads: int | None
) -> tuple[list[list[float]], dict]:
    """Per model, ``repeats`` forward times in ms (round-robin), and the device/threads/timer used."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = inputs.device
    for model in models:
        _check_device(model, device)
    if threads is not None and (threads < 1 or device.type != "cpu"):
        raise ValueError(f"threads sets CPU threads: a positive count on a CPU model, got {threads} on {device}")
    timer = _cuda_time if device.type == "cuda" else _cpu_time
    times: list[list[float]] = [[] for _ in models]
    with _cpu_threads(threads), ExitStack() as modes, torch.inference_mode():
        for model in models:
            modes.enter_context(eval_mode(model))
            for _ in range(warmup):
                model(inputs)
        for _ in range(repeats):
            for index, model in enumerate(models):
                times[index].append(timer(model, inputs))
        setting = {
            "device": str(device),
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "timer": "cuda events" if device.type == "cuda" else "perf_counter",
        }
    return times, setting


def _cpu_time(model: nn.Module, inputs: torch.Tensor) -> float:
    start = time.perf_counter()
    model(inputs)
    return 1000.0 * (time.perf_counter() - start)


def _cuda_time(model: nn.Module, inputs: torch.Tensor) -> float:
    """One run between two CUDA events on the current stream (GPU time, not host time)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    model(inputs)
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


@contextmanager
def _cpu_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check_device(model: nn.Module, device: torch.device) -> None:
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.device != device:
            raise ValueError(f"inputs are on {device} but the model is on {tensor.device}")
        return
