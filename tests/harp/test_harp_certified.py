"""HARP under a certified objective: scores and per-layer rates learned against IBP bounds,
then handed to tp.MetaPruner."""
import json
from dataclasses import replace

import pytest
import torch
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.bounds import compute_bounds
from harp_plugin.cli.main import main
from harp_plugin.importance import HarpImportance, phases
from harp_plugin.masking import attach_masks
from harp_plugin.robust import certified, training
from harp_plugin.robust.attacks import Attack, pgd
from harp_plugin.robust.certified import CertifiedLoss
from harp_plugin.robust.training import TrainConfig
from harp_plugin.schedulers import IncrementalGamma


def _data() -> tuple[DataLoader, DataLoader]:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(32, 1, 12, 12, generator=generator)
    y = torch.randint(0, 4, (32,), generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=16), DataLoader(TensorDataset(x[:16], y[:16]), batch_size=16)


def test_certified_bounds_reach_the_channel_scores_through_the_gates(sequential) -> None:
    model = sequential
    x, y = next(iter(_data()[0]))
    masks = attach_masks(model, 0.5, mode="channel", method="harp", example_inputs=x[:2], ignored_layers=[model[9]])
    grads = {}
    for eps in (0.0, 0.05):
        model.zero_grad()
        CertifiedLoss(eps, method="ibp", warmup_epochs=0, ramp_epochs=0)(model.train(), x, y).backward()
        grads[eps] = torch.cat([m.scores.grad.flatten().clone() for m in masks.masks().values()])
    assert grads[0.05].abs().sum() > 0, "the certified loss trains the scores"
    assert not torch.allclose(grads[0.0], grads[0.05]), "the bounds (not only the clean logits) shape the gradient"


def test_harp_fit_with_a_certified_loss_feeds_metapruner(sequential) -> None:
    model = sequential
    train, val = _data()
    example = torch.rand(1, 1, 12, 12)
    imp = HarpImportance(0.5, "harp", kept_init=0.6, gamma=IncrementalGamma(2.0, period=0.5))
    imp.fit(model, train, loss=CertifiedLoss(0.05, method="ibp", warmup_epochs=0, ramp_epochs=0), val_loader=val,
            config=TrainConfig(epochs=2, lr=0.5), example_inputs=example, ignored_layers=[model[9]])
    ratios = imp.pruning_ratio_dict(model, example)
    assert ratios and all(0.0 <= r < 1.0 for r in ratios.values())
    before = sum(p.numel() for p in model.parameters())
    pruner = imp.make_pruner(model, example, ignored_layers=[model[9]])
    pruner.step()
    assert sum(p.numel() for p in model.parameters()) < before
    assert model[9].out_features == 4
    bounds = compute_bounds(model.eval(), example, 0.05, method="ibp")
    assert torch.all(bounds.lower <= bounds.upper), "the pruned model is still bounded by the engine"


@pytest.mark.slow
def test_harp_prunes_under_the_certified_objective_in_the_main_job(tmp_path, monkeypatch) -> None:
    score_phases, running = [], []  # per score-training fit call: its validation attack, IBP validations

    def spy_fit(*args, **options):
        score_phases.append([options["val_attack"], 0])
        running.append(True)
        try:
            return real_fit(*args, **options)
        finally:
            running.pop()

    def spy_certified_accuracy(*args, **options):
        if running:
            score_phases[-1][1] += 1
        return real_certified_accuracy(*args, **options)

    real_fit, real_certified_accuracy = phases.fit, certified.certified_accuracy
    monkeypatch.setattr(phases, "fit", spy_fit)
    monkeypatch.setattr(certified, "certified_accuracy", spy_certified_accuracy)
    out = tmp_path / "run"
    flags = ["run", "--method", "harp", "--train", "certified", "--max-train", "256", "--max-eval", "48",
             "--pretrain-epochs", "2", "--prune-epochs", "1", "--finetune-epochs", "1", "--gamma-period", "0.1",
             "--eval-attacks", "fgsm", "--model-width", "4", "--no-progress", "--out-dir", str(out)]
    assert main(flags) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["pruned"]["parameters"] < report["dense"]["parameters"]
    assert "certified accuracy (IBP)" in report["pruned"]["extras"]
    assert report["epochs"]["pruned"] == 2 + 1 + 1, "HARP's score-training epoch counts towards its budget"
    assert score_phases == [[None, 1]], "the score epoch is selected on IBP-certified accuracy, no PGD"


def test_certified_harp_selects_its_score_epoch_on_ibp_certified_validation_accuracy(sequential, monkeypatch) -> None:
    """8 epochs = 6 of rate learning + 2 under the projected rates (settle_epochs); the epoch kept
    is the settle epoch with the higher IBP-certified validation accuracy, and no attack is run."""
    scripted = iter([0.9] * 6 + [0.75, 0.25])  # by hand: of the settle epochs 6 and 7, epoch 6 wins
    certify_calls, validation_attacks = [], []

    def spy_certified_accuracy(model, loader, eps, **options):
        measured = real_certified_accuracy(model, loader, eps, **options)  # it runs on the masked model
        certify_calls.append((eps, options["method"]))
        return replace(measured, certified_accuracy=next(scripted))

    def spy_predict(model, loader, attacks=(), *args, **options):
        validation_attacks.append(list(attacks))
        return real_predict(model, loader, attacks, *args, **options)

    real_certified_accuracy, real_predict = certified.certified_accuracy, training.predict
    monkeypatch.setattr(certified, "certified_accuracy", spy_certified_accuracy)
    monkeypatch.setattr(training, "predict", spy_predict)
    monkeypatch.setattr(Attack, "__call__", lambda *_: pytest.fail("a validation attack ran"))
    train, val = _data()
    imp = HarpImportance(0.5, "harp", kept_init=0.6, gamma=IncrementalGamma(2.0, period=0.5))
    result = imp.fit(sequential, train, loss=CertifiedLoss(0.05, method="ibp", warmup_epochs=0, ramp_epochs=0),
                     val_loader=val, config=TrainConfig(epochs=8, lr=0.5), example_inputs=torch.rand(1, 1, 12, 12),
                     ignored_layers=[sequential[9]])
    assert certify_calls == [(0.05, "ibp")] * 8, "every full-eps epoch is scored by IBP at the full eps"
    assert validation_attacks == [[]] * 8
    assert result.best_epoch == 6
    assert [r.val_robust_accuracy for r in result.history[6:]] == [0.75, 0.25]


def test_a_validation_attack_with_a_certified_loss_is_refused_before_masks_are_attached(sequential) -> None:
    train, val = _data()
    with pytest.raises(ValueError, match="val_attack='PGD.*CertifiedLoss"):
        HarpImportance(0.5, "harp").fit(sequential, train, loss=CertifiedLoss(0.05, method="ibp"), val_loader=val,
                                        config=TrainConfig(epochs=1), val_attack=pgd(0.05, steps=2))
    assert not any(parametrize.is_parametrized(m) for m in sequential.modules()), "nothing half-written"
