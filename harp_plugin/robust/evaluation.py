"""Evaluation of a (pruned) model: clean, balanced and per-attack robust accuracy, size."""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import torch
import torch_pruning as tp
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from harp_plugin.distributed import gather_objects, is_main, my_batches
from harp_plugin.models.device import model_device
from harp_plugin.models.modes import eval_mode
from harp_plugin.robust.attacks import Attack


@dataclass
class EvaluationReport:
    """Everything a comparison table needs, in plain types so it serialises to JSON."""

    clean_accuracy: float
    balanced_accuracy: float
    robust_accuracy: dict[str, float]
    parameters: int
    nonzero_parameters: int
    macs: int
    sparsity: float
    samples: int
    extras: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "EvaluationReport":
        return cls(**data)


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    attacks: Sequence[Attack] = (),
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    description: str = "evaluate",
) -> EvaluationReport:
    """Accuracy under each attack on the same samples, plus parameters, MACs and sparsity,
    computed where the model is (``device``, if given, must be that device)."""
    outcome = predict(model, loader, attacks, device, progress=progress, description=description)
    clean = outcome.predictions["clean"]
    classes = num_classes or int(outcome.labels.max()) + 1
    macs, parameters = tp.utils.count_ops_and_params(model, outcome.example)
    total, zeros = weight_counts(model)
    return EvaluationReport(
        clean_accuracy=accuracy(clean, outcome.labels),
        balanced_accuracy=balanced_accuracy(clean, outcome.labels, classes),
        robust_accuracy={a.name: outcome.accuracy(a.name) for a in attacks},
        parameters=int(parameters),
        nonzero_parameters=int(parameters) - zeros,
        macs=int(macs),
        sparsity=zeros / total if total else 0.0,
        samples=int(outcome.labels.numel()),
    )


@dataclass
class Predictions:
    """Labels and per-attack predictions on the same samples (``"clean"`` = no attack)."""

    labels: torch.Tensor
    predictions: dict[str, torch.Tensor]
    example: torch.Tensor

    def accuracy(self, name: str) -> float:
        return accuracy(self.predictions[name], self.labels)


def predict(
    model: nn.Module,
    loader: DataLoader,
    attacks: Sequence[Attack] = (),
    device: str | torch.device | None = None,
    max_batches: int | None = None,
    progress: bool = True,
    description: str = "evaluate",
) -> Predictions:
    """Predictions in eval mode (restored afterwards), clean and under every attack, where the
    model is (``device``, if given, must be that device).

    Under torch.distributed each rank predicts its share of the batches and every rank
    returns all of them (gathered), so accuracies are the same everywhere.
    """
    device = model_device(model, device)
    collected: dict[str, list[torch.Tensor]] = {"labels": [], "clean": []} | {a.name: [] for a in attacks}
    example: torch.Tensor | None = None
    batches = loader if max_batches is None else itertools.islice(loader, max_batches)
    with eval_mode(model):
        for inputs, targets in tqdm(my_batches(batches), desc=description, disable=not (progress and is_main()),
                                    leave=False):
            inputs, targets = inputs.to(device), targets.to(device)
            example = inputs[:1] if example is None else example
            collected["labels"].append(targets.cpu())
            with torch.no_grad():
                collected["clean"].append(model(inputs).argmax(1).cpu())
            for attack in attacks:
                adversarial = attack(model, inputs, targets)
                with torch.no_grad():
                    collected[attack.name].append(model(adversarial).argmax(1).cpu())
    shares = gather_objects((collected, None if example is None else example.cpu()))
    merged = {name: [t for share, _ in shares for t in share[name]] for name in collected}
    examples = [e for _, e in shares if e is not None]
    if not examples:
        raise ValueError("cannot evaluate on an empty data loader (it yielded no batch)")
    labels = torch.cat(merged.pop("labels"))
    return Predictions(
        labels=labels,
        predictions={name: torch.cat(values) for name, values in merged.items()},
        example=example if example is not None else examples[0].to(device),
    )


def accuracy(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    return float((predicted == truth).float().mean())


def balanced_accuracy(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> float:
    """Mean per-class recall over the classes present (SVHN's metric)."""
    recalls = [
        float((predicted[truth == c] == c).float().mean())
        for c in range(num_classes)
        if bool((truth == c).any())
    ]
    return sum(recalls) / len(recalls)


def prunable_layers(model: nn.Module) -> Iterable[tuple[str, nn.Module]]:
    """Conv and Linear layers: the ones structured and fine-grained pruning act on."""
    return ((n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def weight_counts(model: nn.Module) -> tuple[int, int]:
    """(weights, zero weights) of the effective Conv/Linear weights (masks applied)."""
    total = zeros = 0
    for _, layer in prunable_layers(model):
        weight = layer.weight.detach()
        total += weight.numel()
        zeros += int((weight == 0).sum())
    return total, zeros
