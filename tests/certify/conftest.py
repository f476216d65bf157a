"""Certification tests share two CPU cores with other work: one thread, fixed seeds."""
import torch


def pytest_configure(config) -> None:
    torch.set_num_threads(1)
