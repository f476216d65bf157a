"""The training loop: learning, selection on validation, hooks, checkpoints and resume."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from harp_plugin.robust import PGDATLoss, StandardLoss, TrainConfig, TrainingHooks, fit, pgd
from harp_plugin.robust.checkpoint import load_checkpoint
from harp_plugin.robust.hooks import EpochRecord, HookChain


def test_training_learns_and_validates_every_epoch(tiny_model, tiny_loaders) -> None:
    train, val = tiny_loaders
    result = fit(tiny_model, PGDATLoss(0.05, steps=2), train, val, TrainConfig(epochs=6, lr=0.1),
                 val_attack=pgd(0.05, steps=3), progress=False)
    assert [r.epoch for r in result.history] == list(range(6))
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert max(r.val_clean_accuracy for r in result.history) > 0.9
    assert all(r.val_robust_accuracy is not None for r in result.history)
    assert result.history[0].lr > result.history[-1].lr, "cosine schedule decays the learning rate"


def test_the_model_is_restored_to_its_best_validation_epoch(tiny_model, tiny_loaders) -> None:
    train, val = tiny_loaders
    result = fit(tiny_model, StandardLoss(), train, val, TrainConfig(epochs=5, lr=0.1), progress=False)
    best = result.history[result.best_epoch]
    tiny_model.eval()
    images, labels = next(iter(val))
    assert (tiny_model(images).argmax(1) == labels).float().mean().item() == pytest.approx(best.val_clean_accuracy)


class GatedHooks(TrainingHooks):
    """Selectable only from epoch 3 on; adds a penalty; counts its calls."""

    def __init__(self) -> None:
        self.batches = 0
        self.epochs = 0

    def on_batch_start(self, model, batch_index, batches_per_epoch) -> None:
        self.batches += 1

    def regulariser(self, model):
        return 1e-3 * sum(p.square().sum() for p in model.parameters())

    def on_epoch_end(self, model, record) -> None:
        self.epochs += 1
        record.extras["penalty_calls"] = float(self.batches)

    def selectable(self) -> bool:
        return self.epochs >= 3


def test_hooks_are_called_and_gate_selection(tiny_model, tiny_loaders) -> None:
    train, val = tiny_loaders
    hooks = GatedHooks()
    result = fit(tiny_model, StandardLoss(), train, val, TrainConfig(epochs=4, lr=0.1), hooks=hooks, progress=False)
    assert hooks.batches == 4 * len(train)
    assert [r.selectable for r in result.history] == [False, False, True, True]
    assert result.best_epoch in (2, 3)


def test_no_selectable_epoch_is_reported_not_hidden(tiny_model, tiny_loaders) -> None:
    class Never(TrainingHooks):
        def selectable(self) -> bool:
            return False

    train, val = tiny_loaders
    result = fit(tiny_model, StandardLoss(), train, val, TrainConfig(epochs=2, lr=0.1), hooks=Never(), progress=False)
    assert not result.selected and result.best_epoch is None


def test_resume_after_interruption_matches_an_uninterrupted_run(tmp_path: Path, tiny_loaders) -> None:
    from harp_plugin.models import small_cnn

    def fresh():
        torch.manual_seed(0)
        return small_cnn(num_classes=3, input_size=8, width=4)

    def loaders():
        from torch.utils.data import DataLoader

        train, val = tiny_loaders
        return DataLoader(train.dataset, batch_size=12, shuffle=True,
                          generator=torch.Generator().manual_seed(1)), val

    config = TrainConfig(epochs=4, lr=0.1)
    reference = fresh()
    torch.manual_seed(5)
    fit(reference, PGDATLoss(0.05, steps=2), *loaders(), config, progress=False)

    class Interrupt(TrainingHooks):
        def on_epoch_end(self, model, record) -> None:
            if record.epoch == 1:
                raise KeyboardInterrupt

    interrupted = fresh()
    torch.manual_seed(5)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, PGDATLoss(0.05, steps=2), *loaders(), config, hooks=Interrupt(),
            checkpoint_path=tmp_path / "ck.pt", progress=False)
    assert load_checkpoint(tmp_path / "ck.pt", "cpu")["epoch"] == 0, "the interrupted epoch was not saved"
    resumed = fresh()
    result = fit(resumed, PGDATLoss(0.05, steps=2), *loaders(), config,
                 checkpoint_path=tmp_path / "ck.pt", resume=True, progress=False)
    assert [r.epoch for r in result.history] == [0, 1, 2, 3]
    for (name, expected), actual in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(expected.float(), actual.float(), atol=1e-5), name


def test_only_the_given_parameters_are_trained(tiny_model, tiny_loaders) -> None:
    train, val = tiny_loaders
    batch_norms = [m for m in tiny_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    frozen = {n: p.detach().clone() for n, p in tiny_model.named_parameters() if "weight" in n and p.dim() > 1}
    fit(tiny_model, StandardLoss(), train, val, TrainConfig(epochs=1, lr=0.1),
        parameters=[p for m in batch_norms for p in m.parameters()], progress=False)
    assert all(torch.equal(frozen[n], p) for n, p in tiny_model.named_parameters() if n in frozen)


def test_bad_inputs_are_clear_errors(tiny_model, tiny_loaders) -> None:
    from torch.utils.data import DataLoader, TensorDataset

    train, val = tiny_loaders
    empty = DataLoader(TensorDataset(torch.empty(0, 1, 8, 8), torch.empty(0, dtype=torch.long)))
    with pytest.raises(ValueError, match="training data loader is empty"):
        fit(tiny_model, StandardLoss(), empty, val, TrainConfig(epochs=1), progress=False)
    with pytest.raises(ValueError, match="lr must be a positive finite number, got -0.1"):
        TrainConfig(epochs=1, lr=-0.1)
    with pytest.raises(ValueError, match="optimizer must be 'sgd' or 'adam'"):
        TrainConfig(epochs=1, optimizer="rmsprop")
    for p in tiny_model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        fit(tiny_model, StandardLoss(), train, val, TrainConfig(epochs=1), progress=False)


class RecordedLoss(StandardLoss):
    """Cross-entropy that remembers each batch's value and size (read on the host, here only),
    and turns batch ``poison`` (epoch, batch, both 1-based) into ``poison_value``."""

    def __init__(self, poison: tuple[int, int] | None = None, poison_value: float = float("nan")) -> None:
        self.calls: list[tuple[float, int]] = []
        self.poison, self.poison_value, self.batches_per_epoch = poison, poison_value, 4

    def __call__(self, model, inputs, labels):
        value = super().__call__(model, inputs, labels)
        epoch, batch = divmod(len(self.calls), self.batches_per_epoch)
        self.calls.append((value.item(), labels.numel()))
        if self.poison == (epoch + 1, batch + 1):
            return value * self.poison_value
        return value


def uneven_loader(tiny_data) -> DataLoader:
    """36 images in batches of 10, 10, 10, 6: a plain mean of batch losses would be wrong."""
    images, labels = tiny_data
    return DataLoader(TensorDataset(images[:36], labels[:36]), batch_size=10, shuffle=True,
                      generator=torch.Generator().manual_seed(1))


def test_logged_loss_is_the_sample_weighted_mean_of_the_batch_losses(tiny_model, tiny_data, tiny_loaders) -> None:
    loss = RecordedLoss()
    result = fit(tiny_model, loss, uneven_loader(tiny_data), tiny_loaders[1], TrainConfig(epochs=2, lr=0.1),
                 progress=False)
    for epoch, record in enumerate(result.history):
        batches = loss.calls[4 * epoch: 4 * epoch + 4]
        assert [n for _, n in batches] == [10, 10, 10, 6]
        expected = sum(v * n for v, n in batches) / 36
        assert record.train_loss == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("poison_value, shown", [(float("nan"), "nan"), (float("inf"), "inf")])
def test_a_non_finite_loss_names_its_first_batch(tiny_model, tiny_data, tiny_loaders, poison_value, shown) -> None:
    loss = RecordedLoss(poison=(2, 3), poison_value=poison_value)
    message = rf"training loss became {shown} at epoch 2, batch 3; lower the learning rate \(lr=0.1\)"
    with pytest.raises(FloatingPointError, match=message):
        fit(tiny_model, loss, uneven_loader(tiny_data), tiny_loaders[1], TrainConfig(epochs=3, lr=0.1), progress=False)
    assert len(loss.calls) == 8, "checked once, at the end of the epoch it happened in (no per-step sync)"


class ExplodingRegulariser(TrainingHooks):
    """A finite loss but a non-finite regulariser from batch 2 on (as a diverged γ·L_c would be)."""

    def __init__(self) -> None:
        self.batch = 0

    def on_batch_start(self, model, batch_index, batches_per_epoch) -> None:
        self.batch = batch_index

    def regulariser(self, model):
        return torch.tensor(float("inf") if self.batch >= 1 else 0.0)


def test_a_non_finite_regulariser_is_caught_too(tiny_model, tiny_data, tiny_loaders) -> None:
    with pytest.raises(FloatingPointError, match=r"became inf at epoch 1, batch 2"):
        fit(tiny_model, StandardLoss(), uneven_loader(tiny_data), tiny_loaders[1], TrainConfig(epochs=1, lr=0.1),
            hooks=ExplodingRegulariser(), progress=False)


def test_a_later_error_caused_by_a_non_finite_loss_reports_the_loss(tiny_model, tiny_data, tiny_loaders) -> None:
    """HARP's rates turn NaN after a NaN loss and its next mask refresh fails: the loss is the cause."""

    class FailsOnNaNWeights(TrainingHooks):
        def on_batch_start(self, model, batch_index, batches_per_epoch) -> None:
            if any(not torch.isfinite(p).all() for p in model.parameters()):
                raise ValueError("cannot convert float NaN to integer")

    with pytest.raises(FloatingPointError, match=r"became nan at epoch 1, batch 2") as caught:
        fit(tiny_model, RecordedLoss(poison=(1, 2)), uneven_loader(tiny_data), tiny_loaders[1],
            TrainConfig(epochs=1, lr=0.1), hooks=FailsOnNaNWeights(), progress=False)
    assert isinstance(caught.value.__context__, ValueError)


def test_a_hook_chain_calls_every_hook_in_order_adds_regularisers_and_gates_on_all() -> None:
    calls: list[str] = []

    class Fixed(TrainingHooks):
        def __init__(self, name: str, term: float | None, selectable: bool) -> None:
            self.name, self.term, self.ok = name, term, selectable

        def on_batch_start(self, model, batch_index, batches_per_epoch) -> None:
            calls.append(f"batch {self.name}")

        def regulariser(self, model):
            return None if self.term is None else torch.tensor(self.term)

        def on_epoch_end(self, model, record) -> None:
            calls.append(f"epoch {self.name}")

        def selectable(self) -> bool:
            return self.ok

    model = torch.nn.Linear(1, 1)
    chain = HookChain(Fixed("a", 2.0, True), Fixed("b", None, True), Fixed("c", 3.0, False))
    chain.on_batch_start(model, 0, 1)
    chain.on_epoch_end(model, EpochRecord(0, 0.0, 0.0, None, 0.1))
    assert calls == ["batch a", "batch b", "batch c", "epoch a", "epoch b", "epoch c"]
    assert float(chain.regulariser(model)) == 5.0
    assert not chain.selectable()
    assert HookChain(Fixed("d", None, True), Fixed("e", None, True)).selectable()
    assert HookChain(Fixed("f", None, True)).regulariser(model) is None
