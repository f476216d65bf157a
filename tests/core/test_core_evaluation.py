"""Evaluation reports: accuracies, size figures, JSON."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.robust import EvaluationReport, evaluate, fgsm, pgd
from harp_plugin.robust.evaluation import balanced_accuracy


def test_report_holds_every_figure_and_round_trips_through_json(tiny_model, tiny_loaders) -> None:
    _, val = tiny_loaders
    report = evaluate(tiny_model, val, [pgd(0.1, steps=2), fgsm(0.1)], num_classes=3, progress=False)
    assert set(report.robust_accuracy) == {"PGD-2", "FGSM"}
    assert report.samples == 12
    assert report.parameters == sum(p.numel() for p in tiny_model.parameters())
    assert report.macs > 0 and report.sparsity == 0.0
    assert EvaluationReport.from_dict(json.loads(report.to_json())) == report


def test_robust_accuracy_never_exceeds_clean_on_a_confident_model(tiny_model, tiny_loaders) -> None:
    from harp_plugin.robust import StandardLoss, TrainConfig, fit

    train, val = tiny_loaders
    fit(tiny_model, StandardLoss(), train, val, TrainConfig(epochs=6, lr=0.1), progress=False)
    report = evaluate(tiny_model, val, [pgd(0.3, steps=10)], progress=False)
    assert report.robust_accuracy["PGD-10"] <= report.clean_accuracy


def test_sparsity_counts_zeroed_weights(tiny_model, tiny_loaders) -> None:
    _, val = tiny_loaders
    with torch.no_grad():
        for module in tiny_model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.weight[: module.weight.shape[0] // 2] = 0
    report = evaluate(tiny_model, val, progress=False)
    assert 0.4 < report.sparsity < 0.6
    assert report.nonzero_parameters < report.parameters


def test_balanced_accuracy_weights_classes_equally() -> None:
    truth = torch.tensor([0, 0, 0, 1])
    predicted = torch.tensor([0, 0, 0, 0])
    assert balanced_accuracy(predicted, truth, 2) == pytest.approx(0.5)


def test_an_empty_loader_is_a_clear_error(tiny_model) -> None:
    empty = DataLoader(TensorDataset(torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="empty data loader"):
        evaluate(tiny_model, empty, progress=False)
