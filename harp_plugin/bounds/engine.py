"""The built-in engine's entry point: sound output/margin bounds of a model on an ε-ball."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from harp_plugin.bounds.fusion import fuse_channel_affine
from harp_plugin.bounds.graph import BoundGraph, build_graph
from harp_plugin.bounds.methods.crown import WORKING_COPIES, backward_lower_bound, crown_sweep
from harp_plugin.bounds.methods.interval import interval_sweep
from harp_plugin.bounds.numerics import checked_bounds, resolve_budget
from harp_plugin.bounds.operators import BoundOp, Interval
from harp_plugin.bounds.precision import exact_float32
from harp_plugin.bounds.spec import PIXEL_RANGE, input_box, margin_matrix
from harp_plugin.models.device import model_device, same_device
from harp_plugin.models.shapes import shape_errors_named

METHODS = ("ibp", "crown", "crown-ibp")
"""ibp: intervals; crown: CROWN everywhere; crown-ibp: IBP inside, CROWN for the output."""

UNSTABLE_TOLERANCE = 1e-5
"""A ReLU is unstable iff l < −tol and u > tol (methods.md §4)."""

CPU_CHUNK_BYTES = 8 * 2**20
"""On a CPU the output back-substitution runs in chunks of samples whose coefficient tensors stay
below this size: the allocator then reuses small buffers, which stay in cache, instead of mapping
(and page-faulting) fresh memory for every operation on a large batch."""

IBP_CHUNK_BYTES = 4 * 2**20
"""On a CPU, IBP bounds chunks of samples whose widest layer output is at most this size."""

CERTIFY_ROUNDING_ULPS = 128
"""A margin proves something only when its lower bound clears rounding: the bounds use no
directed rounding, and sampled points were seen up to 5.4e-7 outside float32 bounds (the
soundness fuzz), so a margin counts only above 128 ulps of its scale (1.5e-5 × (1 + |bound|)
in float32, 2.8e-14 × (1 + |bound|) in float64)."""


@dataclass
class BoundResult:
    """Bounds of ``C·f(x')`` for every x' in the ball (``C`` = identity when no spec was given).

    ``preactivations`` maps each ReLU's qualified name to the bounds of its input (the
    native backend fills it; it drives unstable-ReLU counts and stability scores).
    """

    lower: Tensor
    upper: Tensor
    method: str
    backend: str = "native"
    preactivations: Mapping[str, Interval] = field(default_factory=dict)
    graph: Optional[BoundGraph] = None
    """The bound graph (native backend): which BatchNorm feeds each ReLU, and so on."""

    def certified(self) -> Tensor:
        """Per sample: every margin lower bound clears 0 by more than rounding (margin spec)."""
        scale = 1.0 + torch.maximum(self.lower.abs(), self.upper.abs()).amax(dim=1, keepdim=True)
        allowance = CERTIFY_ROUNDING_ULPS * torch.finfo(self.lower.dtype).eps * scale
        return (self.lower > allowance).all(dim=1)

    def unstable_counts(self) -> dict[str, int]:
        """Per ReLU layer: the number of unstable neurons, summed over the batch."""
        return {name: int(unstable_mask(l, u).sum()) for name, (l, u) in self.preactivations.items()}


def unstable_mask(lower: Tensor, upper: Tensor) -> Tensor:
    return (lower < -UNSTABLE_TOLERANCE) & (upper > UNSTABLE_TOLERANCE)


def check_method(method: str) -> str:
    key = method.lower()
    if key not in METHODS:
        raise ValueError(f"unknown bound method {method!r}; choose one of {METHODS}")
    return key


def compute_bounds(
    model: nn.Module,
    x: Tensor,
    eps: float,
    *,
    method: str = "crown",
    y: Optional[Tensor] = None,
    C: Optional[Tensor] = None,
    lower: float = PIXEL_RANGE[0],
    upper: float = PIXEL_RANGE[1],
    intersect: bool = True,
    overrides: Optional[Mapping[nn.Module, BoundOp]] = None,
    dtype: Optional[torch.dtype] = None,
    memory_budget: Optional[int] = None,
) -> BoundResult:
    """Bounds of the model's outputs over ``{x' : |x' − x|∞ ≤ eps} ∩ [lower, upper]``.

    Give ``y`` for the margin specification (rows e_y − e_j), or an explicit ``C`` of shape
    ``(B, K, num_outputs)``; with neither, the outputs themselves are bounded. BatchNorm uses
    its running statistics (the eval-mode function) unless ``overrides`` says otherwise.
    ``intersect=False`` keeps the raw CROWN bounds (for comparison with other engines).
    ``dtype=torch.float64`` bounds a float64 copy of the model (slower, rounding ~1e-16);
    ``memory_budget`` (bytes) caps CROWN's coefficient tensors (default: from free memory).
    Matmuls and convolutions run without TF32 while bounding (docs/certification.md).
    """
    method = check_method(method)
    check_device(model, x)
    if dtype is not None and dtype != x.dtype:
        if overrides:
            raise ValueError("overrides name modules of the model; they cannot be combined with a dtype change")
        model, x = copy.deepcopy(model).to(dtype), x.to(dtype)
    with exact_float32():
        return _bounds(model, x, eps, method, y, C, lower, upper, intersect, overrides, memory_budget)


def _bounds(model, x, eps, method, y, C, lower, upper, intersect, overrides, memory_budget) -> BoundResult:
    box = input_box(x, eps, lower, upper)
    with shape_errors_named(model, x):
        graph = build_graph(model, x, overrides)
        bounded = graph if method == "crown" else fuse_channel_affine(graph)
        parts = _ibp_chunks(bounded, x) if method == "ibp" else [slice(None)]
        sweeps = []
        for part in parts:
            part_box = (box[0][part], box[1][part])
            if method == "crown":
                sweeps.append(crown_sweep(graph, part_box, resolve_budget(memory_budget, x.device), intersect))
            else:
                sweeps.append(interval_sweep(bounded, part_box, keep_all=method != "ibp"))
    out_lower = sweeps[0][-1][0]
    if out_lower.dim() != 2:
        raise ValueError(f"the model output must be (batch, classes), got shape {tuple(out_lower.shape)}")
    spec = _specification(x.shape[0], out_lower.shape[1], out_lower, y, C)
    rows = spec.shape[1]
    A = torch.cat([spec, -spec], dim=1)
    last = len(bounded.nodes) - 1
    results = [backward_lower_bound(bounded, node_bounds, last, A[part], fold_only=True) for part, node_bounds in zip(parts, sweeps)]
    result = torch.cat(results) if len(results) > 1 else results[0]
    if method != "ibp":
        crown = _output_crown(bounded, sweeps[0], A, resolve_budget(memory_budget, x.device))
        result = torch.maximum(crown, result) if intersect else crown
    lower_spec, upper_spec = result[:, :rows], -result[:, rows:]
    lower_spec, upper_spec = checked_bounds(lower_spec, upper_spec, "output specification")
    return BoundResult(lower_spec, upper_spec, method, "native", Preactivations(bounded, sweeps), graph)


def _ibp_chunks(graph: BoundGraph, x: Tensor) -> list[slice]:
    """IBP on a CPU runs in chunks of samples whose widest node stays within
    :data:`IBP_CHUNK_BYTES`, so that each layer's output is still in cache when the next reads
    it; on a GPU the whole batch at once."""
    batch = x.shape[0]
    if x.device.type != "cpu":
        return [slice(None)]
    widest = max(x[0].numel(), *(node.shape[1:].numel() for node in graph.nodes[1:]))
    chunk = max(1, IBP_CHUNK_BYTES // (widest * x.element_size()))
    if chunk >= batch:
        return [slice(None)]
    return [slice(start, start + chunk) for start in range(0, batch, chunk)]


def _output_crown(graph: BoundGraph, bounds: Sequence[Interval], A: Tensor, budget_bytes: int) -> Tensor:
    """CROWN lower bound of ``A · output``, in chunks of samples sized by the memory budget (and,
    on a CPU, by :data:`CPU_CHUNK_BYTES`)."""
    batch, rows = A.shape[:2]
    widest = max(bounds[0][0][0].numel(), *(node.shape[1:].numel() for node in graph.nodes[1:]))
    limit = budget_bytes // WORKING_COPIES
    if A.device.type == "cpu":
        limit = min(limit, CPU_CHUNK_BYTES)
    chunk = max(1, limit // (rows * widest * A.element_size()))
    last = len(graph.nodes) - 1
    if chunk >= batch:
        return backward_lower_bound(graph, bounds, last, A)
    parts = []
    for start in range(0, batch, chunk):
        part = slice(start, start + chunk)
        parts.append(backward_lower_bound(graph, [(l[part], u[part]) for l, u in bounds], last, A[part]))
    return torch.cat(parts)


def check_device(model: nn.Module, x: Tensor) -> None:
    """The model's parameters and the input must be on one device (the model's)."""
    if next(iter(model.state_dict().values()), None) is None:
        return  # a model without tensors runs wherever its input is
    device = model_device(model)
    if not same_device(device, x.device):
        raise ValueError(f"the input is on {x.device} but the model on {device}: move one of them (x.to(device))")


def _specification(batch: int, classes: int, like: Tensor, y: Optional[Tensor], C: Optional[Tensor]) -> Tensor:
    """The rows ``(batch, K, classes)`` to bound, in the dtype and on the device of ``like``."""
    if C is not None and y is not None:
        raise ValueError("give either the labels y or a specification C, not both")
    if y is not None:
        if torch.as_tensor(y).numel() != batch:
            raise ValueError(f"got {torch.as_tensor(y).numel()} labels for a batch of {batch}")
        return margin_matrix(torch.as_tensor(y, device=like.device), classes).to(like.dtype)
    if C is None:
        return torch.eye(classes, dtype=like.dtype, device=like.device).expand(batch, classes, classes)
    if C.dim() != 3 or C.shape[0] != batch or C.shape[2] != classes:
        raise ValueError(f"C must have shape ({batch}, K, {classes}), got {tuple(C.shape)}")
    return C.to(like.dtype)


class Preactivations(Mapping[str, Interval]):
    """Each ReLU's name → the bounds of its input, materialised when first read (IBP keeps
    them as centre and radius until then) and joined across the chunks of samples."""

    def __init__(self, graph: BoundGraph, chunks: list[Sequence[Interval]]) -> None:
        self._chunks = chunks
        self._inputs = {graph.nodes[i].name: graph.nodes[i].inputs[0] for i in graph.relu_nodes}
        self._joined: dict[str, Interval] = {}

    def __getitem__(self, name: str) -> Interval:
        index = self._inputs[name]
        if len(self._chunks) == 1:
            return self._chunks[0][index]
        if name not in self._joined:
            parts = [bounds[index] for bounds in self._chunks]
            self._joined[name] = torch.cat([low for low, _ in parts]), torch.cat([high for _, high in parts])
        return self._joined[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._inputs)

    def __len__(self) -> int:
        return len(self._inputs)
