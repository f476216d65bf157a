"""Trace a model with torch.fx and turn its computation into a DAG of bound operators.

No registration is needed: the tracer follows every ``forward`` (residual additions,
``torch.flatten``, ``F.relu``, ``torch.cat``, ``.view``, …) and stops at the leaf modules the
engine has rules for (:mod:`harp_plugin.bounds.operators.op_map`). Calls on constants only
(buffers, ``x.size(0)``) are evaluated. A node with no bound rule raises
:class:`UnsupportedLayerError` naming the node, its target, its module path and the supported
operations; a model fx cannot trace raises :class:`UntraceableModelError` with the tracer's
reason. Operators that read the model's tensors (weights, BatchNorm statistics, constant
buffers) are rebuilt on every call, so pruned layers, new parameter objects, in-place updates
and masks are always what is bounded; the trace, the shapes it needs and the operators that
read no tensor (activations, rearrangements, pooling, additions) are cached per model
structure (module types, hyper-parameters, tensor shapes) and input shape.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from functools import reduce
from typing import Any, Mapping, Optional

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.nn.utils import prune

from harp_plugin.bounds.errors import NoBoundRule, UnsupportedLayerError, UntraceableModelError
from harp_plugin.bounds.operators.activation import ReLUOp
from harp_plugin.bounds.operators.arithmetic import AddOp
from harp_plugin.bounds.operators.base import Bound, BoundOp
from harp_plugin.bounds.operators.op_map import (
    FUNCTION_RULES,
    METHOD_RULES,
    MODULE_CALLS,
    MODULE_CONVERTERS,
    module_rule_type,
    supported_operations,
)
from harp_plugin.models.modes import eval_mode


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


@dataclass(frozen=True)
class Node:
    """One operator applied to the outputs of earlier nodes (node 0 is the input)."""

    name: str
    op: Optional[BoundOp]
    inputs: tuple[int, ...]
    module: Optional[nn.Module] = None
    shape: Optional[torch.Size] = None
    """The node's output shape, batch first (None for the input node)."""


@dataclass
class BoundGraph:
    """Nodes in topological order; the last node is the model output."""

    nodes: list[Node] = field(default_factory=lambda: [Node("input", None, ())])

    def add(
        self, name: str, op: BoundOp, inputs: tuple[int, ...], module: Optional[nn.Module] = None,
        shape: Optional[torch.Size] = None,
    ) -> int:
        self.nodes.append(Node(name, op, inputs, module, shape))
        return len(self.nodes) - 1

    def consumers(self) -> list[list[int]]:
        """For each node, the nodes that read it."""
        found: list[list[int]] = [[] for _ in self.nodes]
        for index, node in enumerate(self.nodes):
            for source in node.inputs:
                found[source].append(index)
        return found

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


class _Tracer(fx.Tracer):
    """Stops at every module the engine has a rule for, and at torch.nn's own modules (so an
    unsupported one is reported as the module it is, not as its internals)."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return module_rule_type(module) is not None or super().is_leaf_module(module, qualified_name)


@dataclass
class _Trace:
    key: tuple
    graph: fx.Graph
    values: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    """Per input shape: each node's shape (tensors) or value (anything else)."""
    rules: dict[str, tuple] = field(default_factory=dict)
    """For the input shape in ``values``: the rule results (operator, bounded inputs) of the
    nodes that read no tensor of the model, which depend on shapes only."""


_TRACES: "weakref.WeakKeyDictionary[nn.Module, _Trace]" = weakref.WeakKeyDictionary()


def build_graph(model: nn.Module, x: Tensor, overrides: Optional[Mapping[nn.Module, BoundOp]] = None) -> BoundGraph:
    """The bound graph of ``model`` on inputs shaped like ``x``; ``overrides`` replaces chosen
    leaf modules' operators (certified training bounds BatchNorm with the batch's statistics)."""
    overrides = overrides or {}
    trace = _trace(model)
    values = _node_values(model, trace, x)
    rules = trace.rules
    graph = BoundGraph()
    env: dict[fx.Node, Any] = {}
    names: dict[str, int] = {}
    for node in trace.graph.nodes:
        if node.op == "placeholder":
            if env:
                raise UnsupportedLayerError("", model, "the engine bounds models with one input tensor")
            env[node] = Bound(0, x.shape)
        elif node.op == "get_attr":
            env[node] = _fetch(model, node.target)
        elif node.op == "output":
            result = env[node.args[0]] if isinstance(node.args[0], fx.Node) else None
            if not isinstance(result, Bound):
                raise UnsupportedLayerError("", model, "its forward must return one tensor that depends on the input")
            return graph
        else:
            args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env[n])
            if not _has_bound((args, kwargs)):
                env[node] = _evaluate(model, node, args, kwargs)
            elif not isinstance(values[node.name], torch.Size):
                env[node] = values[node.name]  # size(), shape, dim() of a bounded tensor
            else:
                env[node] = _add_node(model, graph, node, args, kwargs, values[node.name], overrides, names, rules)
    raise AssertionError("an fx graph always ends with an output node")


def _add_node(model, graph, node, args, kwargs, shape, overrides, names, rules) -> Bound:
    module = model.get_submodule(node.target) if node.op == "call_module" else None
    found = None if module in overrides else rules.get(node.name)
    if found is None:
        try:
            found = _rule(node, module, args, kwargs, overrides)
        except NoBoundRule as error:
            raise _unsupported(model, node, module, str(error)) from None
        if found is None:
            raise _unsupported(model, node, module, "")
        if module not in overrides and _reads_no_tensor(module, args, kwargs):
            rules[node.name] = found
    op, inputs = found
    if op is None:
        return inputs[0]
    if any(not isinstance(a, Bound) for a in inputs):
        raise _unsupported(model, node, module, "a bounded operand is used in an unsupported position")
    name = node.target if module is not None else node.name
    names[name] = names.get(name, 0) + 1
    if names[name] > 1:
        name = f"{name}#{names[name]}"
    return Bound(graph.add(name, op, tuple(a.index for a in inputs), module, shape), shape)


def _reads_no_tensor(module: Optional[nn.Module], args: tuple, kwargs: dict) -> bool:
    """Whether a node's operator depends on shapes and hyper-parameters only (so it can be
    reused while the structure key and the input shape stay the same): a call whose constant
    operands are not tensors, or a torch.nn module without parameters or buffers."""
    if module is not None:
        own_tensors = next(iter(module.parameters()), None) is not None or next(iter(module.buffers()), None) is not None
        return not own_tensors and type(module).__module__.startswith("torch.nn.")
    found = []
    fx.node.map_aggregate((args, kwargs), lambda v: found.append(v) if isinstance(v, Tensor) else None)
    return not found


def _rule(node: fx.Node, module: Optional[nn.Module], args: tuple, kwargs: dict, overrides) -> Optional[tuple]:
    """(operator or None for the identity, bounded inputs), or None when no rule applies."""
    if node.op == "call_module":
        if module in overrides:
            return overrides[module], [args[0]]
        rule_type = module_rule_type(module)
        if rule_type in MODULE_CALLS:
            return MODULE_CALLS[rule_type](module)(args, kwargs)
        return None if rule_type is None else (MODULE_CONVERTERS[rule_type](module, node.target), [args[0]])
    rule = FUNCTION_RULES.get(node.target) if node.op == "call_function" else METHOD_RULES.get(node.target)
    return None if rule is None else rule(args, kwargs)


def _unsupported(model: nn.Module, node: fx.Node, module: Optional[nn.Module], reason: str) -> UnsupportedLayerError:
    if module is not None:
        path = node.target
    else:
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack)[-1] if stack else ""
        module = model.get_submodule(path) if path else model
    target = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", repr(node.target))
    kind = {"call_module": "module", "call_method": "method Tensor.", "call_function": "function "}[node.op]
    return UnsupportedLayerError(
        path, module, reason, node=node.name, target=f"{kind}{target}" if node.op != "call_module" else f"module {target}",
        supported=supported_operations(),
    )


def _has_bound(value: Any) -> bool:
    found = []
    fx.node.map_aggregate(value, lambda v: found.append(v) if isinstance(v, Bound) else None)
    return bool(found)


def _evaluate(model: nn.Module, node: fx.Node, args: tuple, kwargs: dict) -> Any:
    if node.op == "call_module":
        return model.get_submodule(node.target)(*args, **kwargs)
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return node.target(*args, **kwargs)


def _fetch(model: nn.Module, target: str) -> Any:
    return reduce(getattr, target.split("."), model)


def _structure_key(model: nn.Module) -> tuple:
    modules = tuple((name, type(m), m.training, m.extra_repr()) for name, m in model.named_modules())
    tensors = tuple((name, tuple(t.shape)) for name, t in (*model.named_parameters(), *model.named_buffers()))
    return modules, tensors


def _trace(model: nn.Module) -> _Trace:
    _reject_hooks(model)
    key = _structure_key(model)
    cached = _TRACES.get(model)
    if cached is not None and cached.key == key:
        return cached
    try:
        graph = _Tracer().trace(model)
    except Exception as error:  # fx raises many types; the reason is what the user needs
        raise UntraceableModelError(
            f"torch.fx cannot trace {type(model).__name__}: {type(error).__name__}: {error}. "
            "Data-dependent control flow (if/for on tensor values) cannot be traced: move that "
            "part into its own module and teach the engine its bound with "
            "harp_plugin.bounds.register_layer(cls, converter) (the tracer then stops at it), "
            "or certify with backend='auto_lirpa'"
        ) from error
    _TRACES[model] = trace = _Trace(key, graph)
    return trace


def _node_values(model: nn.Module, trace: _Trace, x: Tensor) -> dict[str, Any]:
    """Each node's output shape (or value, for non-tensors) on inputs shaped like ``x``."""
    key = (tuple(x.shape), x.dtype, x.device)
    if key not in trace.values:
        recorded: dict[str, Any] = {}

        class _Recorder(fx.Interpreter):
            def run_node(self, node: fx.Node) -> Any:
                result = super().run_node(node)
                recorded[node.name] = result.shape if isinstance(result, Tensor) else result
                return result

        with torch.no_grad(), eval_mode(model):  # no BatchNorm statistics updated, no dropout drawn
            _Recorder(fx.GraphModule(model, trace.graph)).run(x)
        trace.values = {key: recorded}
        trace.rules = {}
    return trace.values[key]


def _reject_hooks(model: nn.Module) -> None:
    """fx does not run hooks, and a hook may change what a layer computes: refuse them
    (pruning masks from torch.nn.utils.prune are understood; they are re-applied)."""
    for name, module in model.named_modules():
        if module._forward_hooks or getattr(module, "_forward_hooks_with_kwargs", None):
            raise UnsupportedLayerError(
                name, module, "it has a forward hook that may change its output (the engine cannot see "
                "hooks; express a channel gate as a parametrization of the weight, or as a module whose "
                "forward multiplies by a buffer or parameter)",
            )
        if any(not isinstance(h, prune.BasePruningMethod) for h in module._forward_pre_hooks.values()):
            raise UnsupportedLayerError(name, module, "it has a forward pre-hook that may change its input")
