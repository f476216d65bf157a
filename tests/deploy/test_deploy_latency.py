"""measure_latency / compare_latency: warm-up excluded, the median reported, threads stated
and restored, dense and pruned interleaved. Timings are checked against known sleeps with
wide margins (a shared machine); speed targets live in benchmarks/, not here."""
from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from harp_plugin.deploy.latency import compare_latency, measure_latency, measure_side_by_side


class Sleeper(nn.Module):
    """Sleeps ``slow_s`` on its first ``slow_calls`` calls, ``fast_s`` after; logs its calls."""

    def __init__(self, name: str, log: list[str], slow_calls: int = 0, slow_s: float = 0.2, fast_s: float = 0.005):
        super().__init__()
        self.name, self.log, self.slow_calls, self.slow_s, self.fast_s = name, log, slow_calls, slow_s, fast_s
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.slow_s if len(self.log) < self.slow_calls else self.fast_s)
        self.log.append(self.name)
        return x * self.scale


def test_warm_up_runs_are_excluded_and_the_median_is_reported() -> None:
    log: list[str] = []
    model = Sleeper("m", log, slow_calls=3, slow_s=0.2, fast_s=0.005)
    result = measure_latency(model, torch.ones(4, 3), repeats=5, warmup=3)
    assert len(log) == 8, "3 warm-up + 5 timed runs"
    assert 5.0 <= result.median_ms < 150.0, "the three 200 ms warm-up runs would dominate a mean"
    assert (result.batch, result.repeats, result.warmup, result.timer) == (4, 5, 3, "perf_counter")


def test_threads_are_stated_and_restored() -> None:
    before = torch.get_num_threads()
    result = measure_latency(nn.Linear(3, 3), torch.ones(2, 3), repeats=2, warmup=0, threads=1)
    assert result.threads == 1 and result.device == "cpu"
    assert torch.get_num_threads() == before
    assert measure_latency(nn.Linear(3, 3), torch.ones(2, 3), repeats=1, warmup=0).threads == before


def test_dense_and_pruned_runs_are_interleaved_at_each_batch_size() -> None:
    log: list[str] = []
    dense, pruned = Sleeper("dense", log, fast_s=0.03), Sleeper("pruned", log, fast_s=0.0)
    rows = compare_latency(dense, pruned, torch.ones(1, 3), batches=(1, 2), repeats=3, warmup=1)
    per_batch = ["dense", "pruned"] + ["dense", "pruned"] * 3  # warm-ups first, then alternating
    assert log == per_batch * 2
    assert [row.batch for row in rows] == [1, 2]
    assert all(row.dense_ms > row.pruned_ms and row.speedup == row.dense_ms / row.pruned_ms for row in rows)


def test_several_models_side_by_side_keep_their_order() -> None:
    log: list[str] = []
    models = [Sleeper(name, log, fast_s=seconds) for name, seconds in (("a", 0.08), ("b", 0.0), ("c", 0.03))]
    results = measure_side_by_side(models, torch.ones(2, 3), repeats=2, warmup=0)
    assert log == ["a", "b", "c"] * 2
    assert results[1].median_ms < results[2].median_ms < results[0].median_ms


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        measure_latency(nn.Linear(3, 3), torch.ones(2, 3), repeats=0)
    with pytest.raises(ValueError, match="threads sets CPU threads"):
        measure_latency(nn.Linear(3, 3), torch.ones(2, 3), threads=0)
    with pytest.raises(ValueError, match="inputs are on cpu but the model is on meta"):
        measure_latency(nn.Linear(3, 3, device="meta"), torch.ones(2, 3))
    with pytest.raises(ValueError, match="batch sizes must be positive"):
        compare_latency(nn.Linear(3, 3), nn.Linear(3, 3), torch.ones(1, 3), batches=(0,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CUDA-event timing)")
def test_cuda_models_are_timed_with_cuda_events() -> None:
    model = nn.Linear(256, 256).cuda()
    result = measure_latency(model, torch.ones(64, 256, device="cuda"), repeats=3, warmup=1)
    assert result.timer == "cuda events" and result.threads is None and result.median_ms > 0
