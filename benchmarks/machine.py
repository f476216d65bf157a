"""The device a benchmark runs on, and the line that says so in its output.

A figure without its device, torch/CUDA versions and GPU name cannot be compared with another
one, so every benchmark prints :func:`describe` before its table.
"""
from __future__ import annotations

import argparse
import platform

import torch

from harp_plugin.pipeline.config import resolve_device


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when present)")


def chosen_device(parser: argparse.ArgumentParser, requested: str) -> torch.device:
    """``--device`` checked like the CLI's: a GPU this machine lacks is a one-line usage error."""
    try:
        return torch.device(resolve_device(requested))
    except ValueError as error:
        parser.error(str(error))


def describe(device: torch.device) -> str:
    """E.g. ``device cuda:0 (NVIDIA H100), torch 2.15.0, CUDA 12.8, 1 thread``."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return (
        f"device {device} ({name}), torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}, "
        f"{torch.get_num_threads()} CPU thread(s)"
    )
