"""The structure record: what a pruning changed in a model, in types ``weights_only`` loads.

Torch-Pruning shrinks tensors and rewrites plain attributes in place (``out_channels``,
``groups``, ``normalized_shape``, ``num_heads``, a ViT's ``hidden_dim``...); it never swaps
a module for another type. So a pruned model is rebuilt from its dense architecture by
replaying, module by module, those attributes and tensor shapes. Unlike ``tp.state_dict``
(a pickle of every module's ``__dict__``: hooks, objects, code) the record holds only
strings, numbers, tuples and lists, and it names the first layer where an architecture
differs instead of overwriting it. Tensors masked with ``torch.nn.utils.prune``
(``weight_orig`` + ``weight_mask``) are recorded as such and re-created on load.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from harp_plugin.robust.checkpoint import CheckpointError

Record = list[dict[str, Any]]
# Attributes every nn.Module has (hook tables, the training flag): never part of a structure.
_MODULE_INTERNALS = frozenset(nn.Module().__dict__)


def capture_structure(model: nn.Module) -> Record:
    """One entry per module: its name, class, plain attributes, tensors and pruning masks."""
    record = []
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            raise CheckpointError(
                f"layer {name or '(model)'!r} carries parametrizations on {sorted(module.parametrizations)}: "
                "pass the MaskSet (masks=...) to save HARP/HYDRA/LWM masks, or remove them first"
            )
        record.append({
            "name": name,
            "type": class_name(module),
            "attributes": {k: v for k, v in vars(module).items() if k not in _MODULE_INTERNALS and _plain(v)},
            "tensors": _tensor_specs(module),
            "masked": masked_tensor_names(module),
        })
    return record


def class_name(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def masked_tensor_names(module: nn.Module) -> list[str]:
    """Names of the tensors a ``torch.nn.utils.prune`` method masks on ``module``."""
    return sorted(
        hook._tensor_name for hook in module._forward_pre_hooks.values() if isinstance(hook, prune.BasePruningMethod)
    )


def state_keys(record: Record) -> set[str]:
    """The ``state_dict`` keys a model built from ``record`` has (extra states aside)."""
    keys = set()
    for entry in record:
        prefix = f"{entry['name']}." if entry["name"] else ""
        keys |= {prefix + t for t, spec in entry["tensors"].items() if spec is not None and spec["persistent"]}
    return keys


def check_architecture(model: nn.Module, record: Record, source: str) -> None:
    """Raise naming the first layer where ``model`` is not the architecture ``record`` came from."""
    modules = list(model.named_modules())
    for index, entry in enumerate(record):
        if index >= len(modules):
            raise CheckpointError(
                f"{source} was saved from another architecture: it has layer {entry['name']!r} "
                f"({_short(entry['type'])}) after the model's last layer"
            )
        name, module = modules[index]
        if name != entry["name"] or class_name(module) != entry["type"]:
            raise CheckpointError(
                f"{source} was saved from another architecture: the first layer that differs is "
                f"{entry['name'] or '(model)'!r} ({_short(entry['type'])}) in the checkpoint, "
                f"{name or '(model)'!r} ({_short(class_name(module))}) in the model"
            )
        _check_tensors(module, entry, source)
    if len(modules) > len(record):
        name, module = modules[len(record)]
        raise CheckpointError(
            f"{source} was saved from another architecture: the model has layer {name!r} "
            f"({type(module).__name__}) that the checkpoint lacks"
        )


def apply_structure(model: nn.Module, record: Record, device: torch.device) -> None:
    """Give ``model`` (checked by :func:`check_architecture`) the recorded attributes and shapes.

    Tensor values are left uninitialised: ``load_state_dict`` fills them next.
    """
    modules = dict(model.named_modules())
    for entry in record:
        module = modules[entry["name"]]
        for tensor_name in entry["masked"]:
            if tensor_name not in masked_tensor_names(module):
                prune.identity(module, tensor_name)
        for attribute, value in entry["attributes"].items():
            setattr(module, attribute, value)
        for tensor_name, spec in entry["tensors"].items():
            _set_tensor(module, tensor_name, spec, device)


def refresh_masked(model: nn.Module) -> None:
    """Recompute ``weight = weight_orig * weight_mask`` after the originals were loaded."""
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                hook(module, ())


def _tensor_specs(module: nn.Module) -> dict[str, dict[str, Any] | None]:
    specs: dict[str, dict[str, Any] | None] = {}
    for kind, table in (("parameter", module._parameters), ("buffer", module._buffers)):
        for name, tensor in table.items():
            specs[name] = None if tensor is None else {
                "kind": kind,
                "shape": list(tensor.shape),
                "dtype": str(tensor.dtype).removeprefix("torch."),
                "requires_grad": bool(tensor.requires_grad),
                "persistent": name not in module._non_persistent_buffers_set,
            }
    return specs


def _check_tensors(module: nn.Module, entry: Mapping[str, Any], source: str) -> None:
    """Every recorded tensor must exist on the rebuilt layer (masks add ``X_orig``/``X_mask``)."""
    masked = set(entry["masked"])
    existing = set(module._parameters) | set(module._buffers)
    for tensor_name in masked:
        if tensor_name not in existing and f"{tensor_name}_orig" not in existing:
            raise CheckpointError(f"{source}: layer {entry['name']!r} has no tensor {tensor_name!r} to mask in the model")
    available = existing | {f"{t}_{suffix}" for t in masked for suffix in ("orig", "mask")}
    layer = entry["name"] or "(model)"
    missing = sorted(set(entry["tensors"]) - available)
    if missing:
        raise CheckpointError(f"{source}: layer {layer!r} of the model has no tensors {missing}")
    for tensor_name, spec in entry["tensors"].items():
        if spec is not None and _dtype(spec) is None:
            raise CheckpointError(f"{source}: tensor {tensor_name!r} of layer {layer!r} has unknown dtype {spec['dtype']!r}")
    extra = sorted(existing - masked - set(entry["tensors"]))
    if extra:
        raise CheckpointError(f"{source}: layer {layer!r} of the model has tensors {extra} that the checkpoint lacks")


def _set_tensor(module: nn.Module, name: str, spec: Mapping[str, Any] | None, device: torch.device) -> None:
    is_parameter = name in module._parameters
    if spec is None:
        (module._parameters if is_parameter else module._buffers)[name] = None
        return
    current = module._parameters.get(name) if is_parameter else module._buffers.get(name)
    dtype = _dtype(spec)
    if current is not None and list(current.shape) == spec["shape"] and current.dtype == dtype:
        return
    empty = torch.empty(spec["shape"], dtype=dtype, device=device)
    if spec["kind"] == "parameter":
        module._parameters[name] = nn.Parameter(empty, requires_grad=spec["requires_grad"])
    else:
        module._buffers[name] = empty


def _dtype(spec: Mapping[str, Any]) -> torch.dtype | None:
    dtype = getattr(torch, str(spec["dtype"]), None)
    return dtype if isinstance(dtype, torch.dtype) else None


def _plain(value: Any) -> bool:
    """Values ``torch.load(weights_only=True)`` restores and a setattr can replay."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (tuple, list)) and all(_plain(item) for item in value)


def _short(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1]
