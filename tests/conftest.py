"""The GPU lane: tests marked ``cuda`` run on ``HARP_LANE_DEVICE`` (default ``cuda``).

Without a CUDA device they are skipped with the reason; ``HARP_LANE_DEVICE=cpu`` runs the
same lane on the CPU (how its settings are checked on a machine without a GPU).
"""
from __future__ import annotations

import os

import pytest
import torch

LANE_DEVICE = os.environ.get("HARP_LANE_DEVICE", "cuda")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if LANE_DEVICE.startswith("cuda") and not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="CUDA lane: no CUDA device on this machine (on a GPU machine: pytest -m cuda)")
        for item in items:
            if item.get_closest_marker("cuda") is not None:
                item.add_marker(skip)


@pytest.fixture
def lane_device() -> torch.device:
    """The device the ``cuda`` lane runs on."""
    return torch.device(LANE_DEVICE)
