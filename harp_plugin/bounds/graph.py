"""Turn a model into a small DAG of bound operators, refusing anything it cannot bound.

Supported structure (see docs/certification.md):

* ``nn.Sequential`` trees (a subclass only if it keeps ``Sequential.forward``);
* residual blocks computing ``post(main(x) + shortcut(x))``: :class:`Residual`, the project's
  ``harp_plugin.models.BasicBlock``, or any class declared with :func:`register_residual`;
* leaf layers known to :mod:`harp_plugin.bounds.operators`.

Anything else -- a custom ``forward``, an unknown layer, a forward hook that could change
outputs -- raises :class:`UnsupportedLayerError` naming the layer. The graph is rebuilt on
every call, so pruned (smaller) layers and new parameter objects are always picked up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from torch import nn
from torch.nn.utils import prune

from harp_plugin.bounds.errors import UnsupportedLayerError
from harp_plugin.bounds.operators import AddOp, BoundOp, ReLUOp, convert_layer
from harp_plugin.models.resnet import BasicBlock


class Residual(nn.Module):
    """``post(residual(x) + shortcut(x))``; ``None`` paths are the identity."""

    def __init__(
        self, residual: nn.Module, shortcut: Optional[nn.Module] = None, post: Optional[nn.Module] = None
    ) -> None:
        super().__init__()
        self.residual = residual
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.post = post if post is not None else nn.Identity()

    def forward(self, x):
        return self.post(self.residual(x) + self.shortcut(x))


_RESIDUAL_BLOCKS: dict[type, tuple[str, str, Optional[str]]] = {
    Residual: ("residual", "shortcut", "post"),
    BasicBlock: ("residual", "shortcut", "relu"),
}


def register_residual(cls: type, main: str, shortcut: str, post: Optional[str] = None) -> None:
    """Declare that ``cls.forward(x)`` computes ``post(main(x) + shortcut(x))``.

    ``main``, ``shortcut`` and ``post`` name sub-module attributes; ``post=None`` means none.
    The declaration is a promise the engine cannot check: it is what makes the bound sound.
    """
    _RESIDUAL_BLOCKS[cls] = (main, shortcut, post)


@dataclass(frozen=True)
class Node:
    """One operator applied to the outputs of earlier nodes (node 0 is the input)."""

    name: str
    op: Optional[BoundOp]
    inputs: tuple[int, ...]
    module: Optional[nn.Module] = None


@dataclass
class BoundGraph:
    """Nodes in topological order; the last node is the model output."""

    nodes: list[Node] = field(default_factory=lambda: [Node("input", None, ())])

    def add(self, name: str, op: BoundOp, inputs: tuple[int, ...], module: Optional[nn.Module] = None) -> int:
        self.nodes.append(Node(name, op, inputs, module))
        return len(self.nodes) - 1

    @property
    def relu_nodes(self) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if isinstance(node.op, ReLUOp)]

    def batch_norm_before(self, relu_index: int) -> Optional[nn.Module]:
        """The BatchNorm whose output this ReLU takes directly, if any."""
        module = self.nodes[self.nodes[relu_index].inputs[0]].module
        return module if isinstance(module, nn.modules.batchnorm._BatchNorm) else None

    def channel_sources(self, relu_index: int) -> list[nn.Module]:
        """Layers whose output channels are this ReLU's input channels: walks back through
        per-channel maps (BatchNorm) and both branches of residual additions to the conv or
        linear layers (and the BatchNorms on the way)."""
        found: list[nn.Module] = []
        stack = [self.nodes[relu_index].inputs[0]]
        while stack:
            node = self.nodes[stack.pop()]
            if node.module is not None:
                found.append(node.module)
                if isinstance(node.module, nn.modules.batchnorm._BatchNorm):
                    stack.extend(node.inputs)
            elif isinstance(node.op, AddOp):
                stack.extend(node.inputs)
        return found


def build_graph(model: nn.Module, overrides: Optional[Mapping[nn.Module, BoundOp]] = None) -> BoundGraph:
    """The bound graph of ``model``; ``overrides`` replaces chosen layers' operators
    (certified training uses it to bound BatchNorm with the batch's statistics)."""
    graph = BoundGraph()
    _walk(model, "", 0, graph, overrides or {})
    return graph


def _walk(module: nn.Module, name: str, src: int, graph: BoundGraph, overrides: Mapping[nn.Module, BoundOp]) -> int:
    _reject_hooks(module, name)
    if module in overrides:
        return graph.add(name, overrides[module], (src,), module)
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        for child_name, child in module.named_children():
            src = _walk(child, _join(name, child_name), src, graph, overrides)
        return src
    paths = _residual_paths(module, name)
    if paths is not None:
        main, shortcut, post = paths
        left = _walk(getattr(module, main), _join(name, main), src, graph, overrides)
        right = _walk(getattr(module, shortcut), _join(name, shortcut), src, graph, overrides)
        total = graph.add(f"{name or '<model>'} (add)", AddOp(), (left, right))
        return total if post is None else _walk(getattr(module, post), _join(name, post), total, graph, overrides)
    op = convert_layer(module, name)
    return src if op is None else graph.add(name, op, (src,), module)


def _residual_paths(module: nn.Module, name: str) -> Optional[tuple[str, str, Optional[str]]]:
    for cls in type(module).__mro__:
        if cls in _RESIDUAL_BLOCKS:
            if type(module).forward is not cls.forward:
                raise UnsupportedLayerError(name, module, f"overrides {cls.__name__}.forward")
            return _RESIDUAL_BLOCKS[cls]
    return None


def _reject_hooks(module: nn.Module, name: str) -> None:
    """Hooks can change what a layer computes; only pruning masks (re-applied) are understood."""
    if module._forward_hooks:
        raise UnsupportedLayerError(name, module, "it has a forward hook that may change its output")
    for hook in module._forward_pre_hooks.values():
        if not isinstance(hook, prune.BasePruningMethod):
            raise UnsupportedLayerError(name, module, f"it has a forward pre-hook {hook!r}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
