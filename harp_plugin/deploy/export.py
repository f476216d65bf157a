"""Export a pruned model to ONNX or ``torch.export``, checked against PyTorch before it is kept.

Masks are folded into the weights first (θ ⊙ M as plain tensors), so the exported graph
is an ordinary dense network; ``sparse=True`` stores ONNX initializers that are mostly
zeros as sparse tensors (smaller files; runtimes densify them on load). The file is written
beside its target and renamed only once its outputs match the model's on ``check_inputs``,
so a failed export leaves nothing behind. When an exporter fails, each leaf layer is
exported alone to name the one that cannot be expressed.
"""
from __future__ import annotations

import copy
import importlib.util
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from harp_plugin.deploy.pruned import fold_pruning_masks
from harp_plugin.deploy.structure import masked_tensor_names
from harp_plugin.models.modes import eval_mode

FORMATS: tuple[str, ...] = ("onnx", "torch-export")
SUFFIXES = {"onnx": ".onnx", "torch-export": ".pt2"}


class ExportError(ValueError):
    """A model, a layer or a result that cannot be exported faithfully."""


@dataclass(frozen=True)
class ExportResult:
    """Where the model went and how closely the exported graph reproduces it."""

    path: Path
    format: str
    checked_with: str | None  # the runtime that ran the exported file, None when none is installed
    max_abs_error: float | None
    batch: int
    size_bytes: int


def export_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    check_inputs: torch.Tensor,
    *,
    format: str = "onnx",
    sparse: bool = False,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> ExportResult:
    """Export ``model`` (eval mode, masks folded) with a dynamic batch size and check it.

    ``check_inputs``: a batch of real inputs on the model's device; the exported file must
    reproduce the model's outputs on it within ``atol + rtol·|y|`` (ONNX: with ONNX Runtime
    when installed; torch.export: the reloaded program).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if sparse and format != "onnx":
        raise ValueError("sparse storage is available for ONNX only (torch.export keeps dense tensors)")
    if check_inputs.dim() < 1 or check_inputs.shape[0] < 2:
        raise ValueError(f"check_inputs must be a batch of at least 2 inputs, got shape {tuple(check_inputs.shape)}")
    deployable = deployable_copy(model)
    with torch.no_grad():
        expected = deployable(check_inputs)
    target = Path(path)
    with _temporary_beside(target, SUFFIXES[format]) as temporary:
        if format == "onnx":
            _export_onnx(deployable, check_inputs, temporary, sparse)
            checked_with, produced = _run_onnx(temporary, check_inputs)
        else:
            _export_program(deployable, check_inputs, temporary)
            checked_with, produced = "torch.export.load", _run_program(temporary, check_inputs)
        error = None
        if produced is not None:
            error = float((produced - expected).abs().max())
            if not torch.allclose(produced, expected, atol=atol, rtol=rtol):
                raise ExportError(
                    f"the {format} export does not reproduce the model: max |difference| {error:.3g} "
                    f"on {check_inputs.shape[0]} inputs ({checked_with}); nothing was written"
                )
        os.replace(temporary, target)
    return ExportResult(target, format, checked_with, error, int(check_inputs.shape[0]), target.stat().st_size)


def deployable_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every ``torch.nn.utils.prune`` mask folded into its weight."""
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module):
            raise ExportError(
                f"layer {name or '(model)'!r} carries parametrizations (attached masks): save it with "
                "save_pruned(model, path, masks=...) and load it back, or remove the masks first"
            )
    # A masked weight (θ_orig ⊙ M) is a non-leaf tensor, which deepcopy refuses: copy its value.
    memo = {
        id(getattr(module, name)): getattr(module, name).detach().clone()
        for module in model.modules() for name in masked_tensor_names(module)
    }
    deployable = copy.deepcopy(model, memo).eval()
    fold_pruning_masks(deployable)
    return deployable


def _export_onnx(model: nn.Module, inputs: torch.Tensor, path: Path, sparse: bool) -> None:
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"ONNX export needs {' and '.join(missing)} (torch's exporter): pip install 'harp-plugin[export]'"
        )

    def export(module: nn.Module, example: torch.Tensor, destination: str) -> None:
        torch.onnx.export(
            module, (example,), destination, dynamo=True, external_data=False, verbose=False,
            dynamic_shapes=({0: torch.export.Dim.DYNAMIC},), input_names=["input"], output_names=["output"],
        )

    _export_or_name_layer(model, inputs, lambda m, x: export(m, x, str(path)), export, "ONNX")
    if sparse:
        _sparsify_initializers(path)


def _export_program(model: nn.Module, inputs: torch.Tensor, path: Path) -> None:
    def export(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
        return torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))

    _export_or_name_layer(
        model, inputs, lambda m, x: torch.export.save(export(m, x), str(path)), lambda m, x, _: export(m, x),
        "torch.export",
    )


def _export_or_name_layer(
    model: nn.Module, inputs: torch.Tensor, export: Callable[[nn.Module, torch.Tensor], None],
    export_alone: Callable[[nn.Module, torch.Tensor, str], object], exporter: str,
) -> None:
    """Run ``export``; on failure, name the first leaf layer that ``export_alone`` cannot handle."""
    try:
        export(model, inputs)
        return
    except Exception as error:  # exporters raise many types; each is re-raised with the layer named
        failure = error
    with tempfile.TemporaryDirectory() as scratch:
        for name, layer, layer_inputs in sorted(_leaf_calls(model, inputs), key=_builtin_last):
            try:
                export_alone(layer, layer_inputs, str(Path(scratch) / "layer"))
            except Exception as error:
                raise ExportError(
                    f"{exporter} cannot export layer {name!r} ({type(layer).__name__}): {_first_line(error)}"
                ) from failure
    raise ExportError(
        f"{exporter} export failed outside the leaf layers (in a forward function of the model): "
        f"{_first_line(failure)}"
    ) from failure


def _leaf_calls(model: nn.Module, inputs: torch.Tensor) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """Each leaf layer with the tensor it first received, in call order."""
    calls: list[tuple[str, nn.Module, torch.Tensor]] = []
    seen: set[str] = set()

    def record(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple) -> None:
            if name not in seen and len(args) == 1 and isinstance(args[0], torch.Tensor) and args[0].shape[0] > 1:
                seen.add(name)
                calls.append((name, module, args[0].detach()))
        return hook

    handles = [
        module.register_forward_pre_hook(record(name))
        for name, module in model.named_modules() if name and not list(module.children())
    ]
    try:
        with eval_mode(model), torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _builtin_last(call: tuple[str, nn.Module, torch.Tensor]) -> bool:
    """Try the model's own layer types before torch.nn's (which the exporters cover)."""
    return type(call[1]).__module__.startswith("torch.nn.")


def _run_onnx(path: Path, inputs: torch.Tensor) -> tuple[str | None, torch.Tensor | None]:
    if importlib.util.find_spec("onnxruntime") is None:
        return None, None
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {session.get_inputs()[0].name: inputs.detach().cpu().numpy()})
    return "onnxruntime", torch.from_numpy(output).to(inputs.device)


def _run_program(path: Path, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.export.load(str(path)).module()(inputs)


def _sparsify_initializers(path: Path) -> None:
    """Store weight initializers as ONNX sparse ones (values + flat int64 indices) where that is
    smaller; vectors (biases, BN statistics) stay dense."""
    import numpy
    import onnx
    from onnx import numpy_helper

    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    for initializer in list(graph.initializer):
        array = numpy_helper.to_array(initializer)
        flat = array.reshape(-1)
        indices = numpy.flatnonzero(flat).astype(numpy.int64)
        if sum(size > 1 for size in array.shape) < 2 or indices.size * (array.itemsize + 8) >= array.nbytes:
            continue
        values = numpy_helper.from_array(flat[indices], name=initializer.name)
        sparse = onnx.helper.make_sparse_tensor(values, numpy_helper.from_array(indices), list(array.shape))
        graph.sparse_initializer.append(sparse)
        graph.initializer.remove(initializer)
    onnx.save(graph_model, str(path))


@contextmanager
def _temporary_beside(target: Path, suffix: str) -> Iterator[Path]:
    """A temporary file next to ``target`` (same file system for the final rename), removed on failure.

    ``suffix``: the exporter's own (``torch.export.save`` insists on ``.pt2``).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    for marker in ("No ONNX function found", "Unsupported", "Could not"):
        if marker in text:
            return text[text.index(marker):].splitlines()[0]
    return text.splitlines()[0] if text else type(error).__name__
