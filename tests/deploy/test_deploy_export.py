"""export_model: masks folded, outputs of the exported file equal PyTorch's (checked here again
with the runtime, on a batch of another size), the layer that cannot export is named."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import torch_pruning as tp
import torchvision
from torch import nn
from torch.nn.utils import prune

from harp_plugin.deploy.export import ExportError, export_model
from harp_plugin.masking import attach_masks
from harp_plugin.models import resnet18, small_cnn

ONNX_EXPORTER = all(importlib.util.find_spec(name) for name in ("onnx", "onnxscript"))
needs_onnx = pytest.mark.skipif(not ONNX_EXPORTER, reason="onnx/onnxscript not installed (the [export] extra)")
needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime not installed (the [export] extra)"
)


def _channel_pruned(model: nn.Module, shape: tuple[int, ...], classifier: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    example = torch.rand(1, *shape)
    tp.MetaPruner(model, example, importance=tp.importance.GroupMagnitudeImportance(), pruning_ratio=0.5,
                  ignored_layers=[classifier]).step()
    return model.eval()


def _masked_small_cnn() -> nn.Module:
    """Channels removed, then 80% of one conv's weights masked with torch.nn.utils.prune."""
    model = small_cnn(width=8)
    _channel_pruned(model, (1, 28, 28), model[-1])
    prune.l1_unstructured(model[2][0], "weight", amount=0.8)
    return model


def _inputs(batch: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.rand(batch, *shape, generator=torch.Generator().manual_seed(seed))


def _run_program(path: Path, inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.export.load(str(path)).module()(inputs)


def _run_onnx(path: Path, inputs: torch.Tensor) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: inputs.numpy()})[0])


def _pruned_resnet18_plugin() -> nn.Module:
    model = resnet18(num_classes=10, width=8)
    return _channel_pruned(model, (3, 16, 16), model[-1])


def _pruned_torchvision_resnet18() -> nn.Module:
    model = torchvision.models.resnet18(num_classes=10)
    return _channel_pruned(model, (3, 32, 32), model.fc)


MODELS = {
    "small-cnn (channels + fine-grained mask)": (_masked_small_cnn, (1, 28, 28)),
    "resnet18 (plugin)": (_pruned_resnet18_plugin, (3, 16, 16)),
    "torchvision resnet18": (_pruned_torchvision_resnet18, (3, 32, 32)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_torch_export_reproduces_the_pruned_model(tmp_path: Path, name: str) -> None:
    build, shape = MODELS[name]
    model = build()
    result = export_model(model, tmp_path / "model.pt2", _inputs(4, shape, 0), format="torch-export")
    assert result.checked_with == "torch.export.load" and result.max_abs_error <= 1e-5
    other_batch = _inputs(3, shape, 1)  # another batch size: the batch dimension is dynamic
    with torch.no_grad():
        torch.testing.assert_close(_run_program(result.path, other_batch), model(other_batch), atol=1e-5, rtol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt2"], "no temporary file is left behind"


@needs_onnx
@needs_onnxruntime
@pytest.mark.slow
@pytest.mark.parametrize("name", ["small-cnn (channels + fine-grained mask)", "torchvision resnet18"])
def test_onnx_reproduces_the_pruned_model_in_onnxruntime(tmp_path: Path, name: str) -> None:
    build, shape = MODELS[name]
    model = build()
    result = export_model(model, tmp_path / "model.onnx", _inputs(4, shape, 0), format="onnx", sparse=True)
    assert result.checked_with == "onnxruntime"
    other_batch = _inputs(5, shape, 1)
    with torch.no_grad():
        torch.testing.assert_close(_run_onnx(result.path, other_batch), model(other_batch), atol=1e-5, rtol=1e-4)
    if name.startswith("small-cnn"):
        import onnx

        graph = onnx.load(str(result.path)).graph
        sparse = {tensor.values.name: tensor for tensor in graph.sparse_initializer}
        assert list(sparse) == ["2.0.weight"], "only the 80%-masked conv weight is smaller stored sparse"
        (stored,) = sparse.values()
        assert stored.values.dims[0] == int((model[2][0].weight != 0).sum())


class Bessel(nn.Module):
    """An elementwise op torch.export handles and ONNX has no operator for."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.bessel_j0(x)


class LeavesTorch(nn.Module):
    """A layer whose result depends on a tensor's value in Python: no graph can hold it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if float(x.sum()) > 0 else x


@needs_onnx
@pytest.mark.slow
def test_a_layer_onnx_cannot_express_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), Bessel()).eval()
    with pytest.raises(ExportError, match=r"ONNX cannot export layer '1' \(Bessel\).*bessel_j0"):
        export_model(model, tmp_path / "model.onnx", torch.rand(2, 3))
    assert list(tmp_path.iterdir()) == []


def test_a_layer_torch_export_cannot_trace_is_named(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), LeavesTorch()).eval()
    with pytest.raises(ExportError, match=r"torch.export cannot export layer '2' \(LeavesTorch\)"):
        export_model(model, tmp_path / "model.pt2", torch.rand(2, 3), format="torch-export")
    assert list(tmp_path.iterdir()) == []


def test_attached_masks_and_bad_arguments_are_refused(tmp_path: Path) -> None:
    model = small_cnn(width=4)
    attach_masks(model, 0.5)
    with pytest.raises(ExportError, match="layer '1.0' carries parametrizations"):
        export_model(model, tmp_path / "m.pt2", torch.rand(2, 1, 28, 28), format="torch-export")
    plain = small_cnn(width=4)
    with pytest.raises(ValueError, match="format must be one of"):
        export_model(plain, tmp_path / "m.tflite", torch.rand(2, 1, 28, 28), format="tflite")
    with pytest.raises(ValueError, match="sparse storage is available for ONNX only"):
        export_model(plain, tmp_path / "m.pt2", torch.rand(2, 1, 28, 28), format="torch-export", sparse=True)
    with pytest.raises(ValueError, match="at least 2 inputs"):
        export_model(plain, tmp_path / "m.pt2", torch.rand(1, 1, 28, 28), format="torch-export")
    assert list(tmp_path.iterdir()) == []
