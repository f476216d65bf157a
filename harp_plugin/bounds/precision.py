"""Bounds are computed in true float32: no TensorFloat-32 on GPUs.

On Ampere and later GPUs PyTorch runs float32 convolutions in TF32 by default (a 10-bit
mantissa, ~1e-3 relative error), which can move a bound past a value the network really
takes: a certificate would then not hold for every point of the ball in floating point.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """TF32 off for cuDNN convolutions and CUDA matmuls for the duration (settings restored).

    torch ≥ 2.9 keeps the setting in ``fp32_precision``; once a user has set it that way, reading
    the legacy ``allow_tf32`` flags raises, so the precision API is used wherever it exists.
    """
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        conv = torch.backends.cudnn.conv
        saved = matmul.fp32_precision, conv.fp32_precision
        matmul.fp32_precision = conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = saved
        return
    cudnn = torch.backends.cudnn
    matmul_tf32 = matmul.allow_tf32
    matmul.allow_tf32 = False
    try:
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                         allow_tf32=False):
            yield
    finally:
        matmul.allow_tf32 = matmul_tf32
