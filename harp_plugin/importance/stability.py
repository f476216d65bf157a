"""``StabilityImportance``: Torch-Pruning importance from ReLU stability on the ε-ball.

Scores come from bound propagation on calibration batches (training data, never the test
set): per channel, the mean of tanh(1 + l·u/γ²) (``nrs``), of tanh(1 + l·u) (``rs``), the stable
fraction (``count``) or minus the relaxation area (``relax``). The most unstable channels go
first. Two traps of methods.md §4 are handled: tanh saturates on loose bounds, so a small
magnitude term breaks ties; a channel dead on the whole ball would look perfectly stable, so it
can be pushed to the bottom (``dead_penalty``).
"""
from __future__ import annotations

from typing import Iterable, Optional, Union

import torch
import torch_pruning as tp
from torch import Tensor, nn

from harp_plugin.bounds.engine import check_method, compute_bounds
from harp_plugin.bounds.graph import build_graph
from harp_plugin.bounds.spec import check_eps
from harp_plugin.bounds.stability import MODES, channel_scores, dead_channels
from harp_plugin.models.device import model_device
from harp_plugin.models.modes import eval_mode

Calibration = Union[Tensor, Iterable[Union[Tensor, tuple[Tensor, ...], list[Tensor]]]]

_OUT_CHANNEL_FNS = (
    tp.pruner.function.prune_conv_out_channels,
    tp.pruner.function.prune_linear_out_channels,
    tp.pruner.function.prune_batchnorm_out_channels,
)


class StabilityImportance(tp.importance.Importance):
    """Higher = more stable = keep; a 1-D tensor of len(group[0].idxs) per group.

    Channel scores are recomputed whenever a parameter or buffer of ``model`` changed (new
    object after ``pruner.step()``, or an in-place update during retraining). Groups with no
    ReLU among their out-channel layers get ``None`` (Torch-Pruning then leaves them alone).
    """

    def __init__(
        self,
        model: nn.Module,
        calibration: Calibration,
        eps: float,
        mode: str = "nrs",
        method: str = "ibp",
        magnitude_weight: float = 1e-3,
        dead_penalty: Optional[float] = 1.0,
        max_batches: Optional[int] = None,
        lower: float = 0.0,
        upper: float = 1.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown stability mode {mode!r}; choose one of {MODES}")
        self.model, self.eps, self.mode = model, check_eps(eps), mode
        self.method = check_method(method)
        self.magnitude_weight, self.dead_penalty = magnitude_weight, dead_penalty
        self.lower, self.upper = lower, upper
        self.batches = _calibration_batches(calibration, max_batches)
        self._key: Optional[tuple] = None
        self._table: dict[nn.Module, Tensor] = {}
        if not build_graph(model, self.batches[0][:1].to(model_device(model))).relu_nodes:
            raise ValueError("StabilityImportance needs a model with ReLUs; this model has no ReLU")

    @torch.no_grad()
    def __call__(self, group) -> Optional[Tensor]:
        table = self.channel_table()
        size = len(group[0].idxs)
        dtype = next(iter(table.values())).dtype if table else torch.get_default_dtype()
        total, count = torch.zeros(size, dtype=dtype), torch.zeros(size, dtype=dtype)
        for i, (dep, idxs) in enumerate(group):
            module, root_idxs = dep.layer, group[i].root_idxs
            if module not in table or dep.pruning_fn not in _OUT_CHANNEL_FNS or None in root_idxs:
                continue
            roots = torch.as_tensor(root_idxs, dtype=torch.long)
            total.index_add_(0, roots, table[module][torch.as_tensor(idxs, dtype=torch.long)].cpu())
            count.index_add_(0, roots, torch.ones(len(roots), dtype=dtype))
        if not count.any():
            return None
        scores = total / count.clamp(min=1)
        return scores + self.magnitude_weight * _magnitude(group[0])

    def channel_table(self) -> dict[nn.Module, Tensor]:
        """Score per out-channel of every layer feeding a ReLU, cached on the model's state."""
        key = _state_key(self.model)
        if key != self._key:
            self._table, self._key = self._compute_table(), key
        return self._table

    def _compute_table(self) -> dict[nn.Module, Tensor]:
        device = model_device(self.model)
        graph = build_graph(self.model, self.batches[0].to(device))
        relus = graph.relu_nodes
        if not relus:
            raise ValueError("StabilityImportance needs a model with ReLUs; this model has no ReLU")
        sums: dict[str, Tensor] = {}
        dead: dict[str, Tensor] = {}
        with eval_mode(self.model):
            for x in self.batches:
                bounds = compute_bounds(self.model, x.to(device), self.eps, method=self.method, lower=self.lower, upper=self.upper)
                for index in relus:
                    name = graph.nodes[index].name
                    low, high = bounds.preactivations[name]
                    bn = graph.batch_norm_before(index)
                    score = channel_scores(low, high, self.mode, None if bn is None else bn.weight) * low.shape[0]
                    sums[name] = sums.get(name, 0) + score
                    dead[name] = dead.get(name, torch.ones_like(score, dtype=torch.bool)) & dead_channels(low, high)
        samples = sum(x.shape[0] for x in self.batches)
        scores = {name: total / samples for name, total in sums.items()}
        if self.dead_penalty is not None:
            floor = min(s.min() for s in scores.values()) - self.dead_penalty
            scores = {name: torch.where(dead[name], floor, s) for name, s in scores.items()}
        return _by_module(graph, relus, scores)


def _by_module(graph, relus: list[int], scores: dict[str, Tensor]) -> dict[nn.Module, Tensor]:
    """Give every layer on a ReLU's channel path that ReLU's scores (averaged if several)."""
    sums: dict[nn.Module, Tensor] = {}
    counts: dict[nn.Module, int] = {}
    for index in relus:
        score = scores[graph.nodes[index].name]
        for module in graph.channel_sources(index):
            if module in sums and sums[module].shape != score.shape:
                continue
            sums[module] = sums.get(module, 0) + score
            counts[module] = counts.get(module, 0) + 1
    return {module: total / counts[module] for module, total in sums.items()}


def _magnitude(item) -> Tensor:
    """Per-channel L2 norm of the root layer's weights, scaled to max 1 (the tie-breaker)."""
    weight = getattr(item.dep.layer, "weight", None)
    if weight is None or item.dep.pruning_fn not in _OUT_CHANNEL_FNS:
        return torch.zeros(len(item.idxs))
    norms = weight.detach()[torch.as_tensor(item.idxs, dtype=torch.long)].flatten(1).norm(dim=1).cpu()
    return norms / norms.max().clamp(min=1e-12)


def _state_key(model: nn.Module) -> tuple:
    tensors = list(model.parameters()) + list(model.buffers())
    return tuple((id(t), t._version, tuple(t.shape)) for t in tensors)


def _calibration_batches(calibration: Calibration, max_batches: Optional[int]) -> list[Tensor]:
    if isinstance(calibration, Tensor):
        batches = [calibration]
    else:
        batches = []
        for item in calibration:
            batches.append(item[0] if isinstance(item, (tuple, list)) else item)
            if max_batches is not None and len(batches) >= max_batches:
                break
    if not batches or any(not isinstance(b, Tensor) or b.numel() == 0 for b in batches):
        raise ValueError("calibration must be a non-empty tensor or an iterable of input batches (or (x, y) pairs)")
    return batches
