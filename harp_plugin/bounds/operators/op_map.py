"""Which bound rule serves which traced call: one line per supported module type, function
and tensor method. Adding an operator = its file in this package + its line here."""
from __future__ import annotations

import operator
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from harp_plugin.bounds.operators import activation, arithmetic, linear, normalization, pooling, reshape
from harp_plugin.bounds.operators.base import BoundOp, Rule
from harp_plugin.bounds.operators.convolution import ConvOp
from harp_plugin.models.normalization import InputNormalization

Converter = Callable[[nn.Module, str], Optional[BoundOp]]
"""Builds a leaf module's operator from the module alone; None means the identity."""

_identity: Converter = lambda module, name: None  # noqa: E731

MODULE_CONVERTERS: dict[type, Converter] = {
    nn.Linear: linear.linear_module,
    nn.Conv1d: ConvOp,
    nn.Conv2d: ConvOp,
    nn.BatchNorm1d: normalization.batch_norm_module,
    nn.BatchNorm2d: normalization.batch_norm_module,
    InputNormalization: normalization.input_normalization_module,
    nn.ReLU: lambda module, name: activation.ReLUOp(),
    nn.ReLU6: activation.hardtanh_module,
    nn.Hardtanh: activation.hardtanh_module,
    nn.LeakyReLU: activation.leaky_relu_module,
    nn.AvgPool1d: pooling.avg_pool_module,
    nn.AvgPool2d: pooling.avg_pool_module,
    nn.AdaptiveAvgPool1d: pooling.avg_pool_module,
    nn.AdaptiveAvgPool2d: pooling.avg_pool_module,
    nn.MaxPool1d: pooling.max_pool_module,
    nn.MaxPool2d: pooling.max_pool_module,
    nn.Identity: _identity,
    nn.Dropout: _identity,
    nn.Dropout1d: _identity,
    nn.Dropout2d: _identity,
}
"""Leaf modules bounded from their parameters (Dropout: its eval-mode identity)."""

MODULE_CALLS: dict[type, Callable[[nn.Module], Rule]] = {
    nn.Flatten: reshape.rearrange_function,
    nn.Unflatten: reshape.rearrange_function,
}
"""Leaf modules whose rule needs the call's input shape."""

_REARRANGING_FUNCTIONS = (torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze, torch.movedim)
_REARRANGING_METHODS = ("view", "reshape", "flatten", "permute", "transpose", "contiguous", "squeeze", "unsqueeze", "movedim", "view_as", "reshape_as")

FUNCTION_RULES: dict[Callable, Rule] = {
    **{f: arithmetic.add_rule for f in arithmetic.ADD_TARGETS},
    **{f: arithmetic.sub_rule for f in arithmetic.SUB_TARGETS},
    **{f: arithmetic.mul_rule for f in arithmetic.MUL_TARGETS},
    **{f: arithmetic.div_rule for f in arithmetic.DIV_TARGETS},
    operator.neg: arithmetic.neg_rule,
    torch.neg: arithmetic.neg_rule,
    **{f: reshape.rearrange_function(f) for f in _REARRANGING_FUNCTIONS},
    torch.cat: reshape.cat_rule,
    torch.concat: reshape.cat_rule,
    F.relu: activation.relu_rule,
    torch.relu: activation.relu_rule,
    F.relu6: activation.relu6_rule,
    F.hardtanh: activation.hardtanh_rule,
    F.leaky_relu: activation.leaky_relu_rule,
    F.linear: linear.linear_function,
    operator.matmul: linear.matmul_function,
    torch.matmul: linear.matmul_function,
    torch.mean: pooling.mean_rule,
    F.avg_pool1d: pooling.pool_function(F.avg_pool1d),
    F.avg_pool2d: pooling.pool_function(F.avg_pool2d),
    F.adaptive_avg_pool1d: pooling.pool_function(F.adaptive_avg_pool1d),
    F.adaptive_avg_pool2d: pooling.pool_function(F.adaptive_avg_pool2d),
    F.max_pool1d: pooling.max_pool_function(1),
    F.max_pool2d: pooling.max_pool_function(2),
    F.dropout: lambda args, kwargs: (None, [args[0]]),
}
"""Traced ``call_function`` targets (operator.add is ``a + b``, and so on)."""

METHOD_RULES: dict[str, Rule] = {
    **{m: reshape.rearrange_method(m) for m in _REARRANGING_METHODS},
    "add": arithmetic.add_rule,
    "sub": arithmetic.sub_rule,
    "mul": arithmetic.mul_rule,
    "div": arithmetic.div_rule,
    "neg": arithmetic.neg_rule,
    "relu": activation.relu_rule,
    "mean": pooling.mean_rule,
    "matmul": linear.matmul_function,
}
"""Traced ``call_method`` names (``x.view(...)``, ``x.relu()``, …)."""


def register_layer(cls: type, converter: Converter) -> None:
    """Teach the engine a leaf module type: the tracer stops at it and bounds it with
    ``converter(module, qualified_name)`` (a :class:`BoundOp`, or None for the identity)."""
    MODULE_CONVERTERS[cls] = converter


def module_rule_type(module: nn.Module) -> Optional[type]:
    """The registered type whose rule bounds ``module``: its class or a base class whose
    ``forward`` it inherits unchanged (a subclass with its own forward is traced through)."""
    for cls in type(module).__mro__:
        if cls in MODULE_CONVERTERS or cls in MODULE_CALLS:
            return cls if type(module).forward is cls.forward else None
    return None


def supported_operations() -> list[str]:
    """Every supported module, function and method, by name (for error messages and docs)."""
    modules = [cls.__name__ for cls in (*MODULE_CONVERTERS, *MODULE_CALLS)]
    functions = sorted({_function_name(f) for f in FUNCTION_RULES})
    methods = [f"Tensor.{m}" for m in METHOD_RULES]
    return modules + functions + methods


def _function_name(function: Callable) -> str:
    module = getattr(function, "__module__", None) or "operator"
    module = {"torch.nn.functional": "F", "_operator": "operator"}.get(module, module)
    return f"{module}.{getattr(function, '__name__', repr(function))}"
