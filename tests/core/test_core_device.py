"""The device follows the model: nothing defaults to the CPU, nothing moves a model behind the
caller's back, a split model or a contradicting device is a clear error (CPU-only checks; the
CUDA lane in tests/cuda runs every path on a GPU)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
import torch

import harp_plugin
from harp_plugin.certify.accuracy import certified_accuracy
from harp_plugin.cli.main import main
from harp_plugin.models.device import DeviceError, model_device
from harp_plugin.pipeline.config import resolve_device
from harp_plugin.robust.evaluation import predict
from harp_plugin.robust.losses import StandardLoss
from harp_plugin.robust.training import TrainConfig, fit


def _package_callables():
    """Every function and method defined in a harp_plugin module."""
    for info in pkgutil.walk_packages(harp_plugin.__path__, prefix="harp_plugin."):
        module = importlib.import_module(info.name)
        for _, item in inspect.getmembers(module):
            if getattr(item, "__module__", None) != info.name:
                continue
            if inspect.isfunction(item):
                yield f"{info.name}.{item.__name__}", item
            elif inspect.isclass(item):
                for name, member in vars(item).items():
                    if inspect.isfunction(member):
                        yield f"{info.name}.{item.__name__}.{name}", member


def _is_cpu(value) -> bool:
    return (isinstance(value, str) and value.lower().startswith("cpu")) or (
        isinstance(value, torch.device) and value.type == "cpu"
    )


def test_no_function_in_the_package_defaults_to_the_cpu() -> None:
    checked, offenders = 0, []
    for name, function in _package_callables():
        checked += 1
        for parameter in inspect.signature(function).parameters.values():
            if _is_cpu(parameter.default):
                offenders.append(f"{name}({parameter.name}={parameter.default!r})")
    assert checked > 200, "the walk found the package's functions"
    assert not offenders, f"these default to the CPU instead of the model's device: {offenders}"


def test_model_device_is_where_the_parameters_are(tiny_model) -> None:
    assert model_device(tiny_model) == torch.device("cpu")
    assert model_device(tiny_model, "cpu") == torch.device("cpu")
    assert model_device(tiny_model, torch.device("cpu")) == torch.device("cpu")
    assert model_device(torch.nn.ReLU(), "meta") == torch.device("meta"), "no tensors: the requested device"


def test_a_split_model_is_an_error_naming_a_tensor_on_each_device(tiny_model, tiny_loaders) -> None:
    tiny_model[-1].to("meta")
    message = r"split across devices \(cpu: .*, meta: .*weight"
    with pytest.raises(DeviceError, match=message):
        model_device(tiny_model)
    train, val = tiny_loaders
    with pytest.raises(DeviceError, match=message):
        fit(tiny_model, StandardLoss(), train, val, TrainConfig(epochs=1), progress=False)
    with pytest.raises(DeviceError, match=message):
        predict(tiny_model, val, progress=False)
    with pytest.raises(DeviceError, match=message):
        certified_accuracy(tiny_model, val, 0.01, method="ibp", backend="native", progress=False)


def test_a_device_the_model_is_not_on_is_an_error_and_nothing_moves(tiny_model, tiny_loaders) -> None:
    train, val = tiny_loaders
    before = {name: p.detach().clone() for name, p in tiny_model.named_parameters()}
    message = r"device 'meta' was requested but Sequential's parameters are on cpu; move the model"
    with pytest.raises(DeviceError, match=message):
        fit(tiny_model, StandardLoss(), train, val, TrainConfig(epochs=1), device="meta", progress=False)
    with pytest.raises(DeviceError, match=message):
        predict(tiny_model, val, device="meta", progress=False)
    with pytest.raises(DeviceError, match=message):
        certified_accuracy(tiny_model, val, 0.01, method="ibp", backend="native", device="meta", progress=False)
    assert all(p.device.type == "cpu" and torch.equal(p, before[n]) for n, p in tiny_model.named_parameters())


@pytest.mark.parametrize(
    ("requested", "message"),
    [("cuda:3", "CUDA is not available"), ("gpu", "'gpu' is not a device name")],
)
def test_resolve_device_rejects_devices_this_machine_lacks(requested: str, message: str) -> None:
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only machine's messages")
    with pytest.raises(ValueError, match=message):
        resolve_device(requested)


def test_a_cuda_index_beyond_the_visible_gpus_names_the_count(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"'cuda:3' requested but this machine has 1 CUDA device\(s\): cuda:0 to cuda:0"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == "cuda:0"


@pytest.mark.parametrize("device", ["cuda", "cuda:3"])
def test_cli_device_without_that_gpu_is_one_line(device: str, tmp_path: Path, capsys) -> None:
    if torch.cuda.device_count() > 3:
        pytest.skip("this machine has the requested GPU")
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    assert main(["run", "--device", device, "--no-progress", "--out-dir", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("harp-prune: error: device ") and error.count("\n") == 1
    assert not (out / "pretrain.pt").exists()
