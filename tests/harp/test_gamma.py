"""The step-wise incremental γ schedule and its hook into the training loop."""
import pytest
import torch

from harp_plugin.masking import attach_masks
from harp_plugin.masking.hooks import MaskTrainingHooks
from harp_plugin.robust.hooks import EpochRecord
from harp_plugin.schedulers import IncrementalGamma


def test_gamma_grows_per_period_and_freezes_at_the_target() -> None:
    schedule = IncrementalGamma(0.01)
    assert schedule.gamma == pytest.approx(0.01)
    schedule.end_period(0.5)
    schedule.end_period(0.2)
    assert schedule.gamma == pytest.approx(0.03)
    schedule.end_period(0.00004)  # round(L_c, 4) == 0
    schedule.end_period(0.3)
    assert schedule.frozen and schedule.gamma == pytest.approx(0.03)


@pytest.mark.parametrize("kwargs", [{"gamma0": -1.0}, {"period": 0.0}, {"gamma0": float("nan")}])
def test_bad_schedule_settings_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        IncrementalGamma(**kwargs)


def test_hooks_step_gamma_per_fraction_of_an_epoch(sequential) -> None:
    masks = attach_masks(sequential, 0.1, kept_init=0.5)
    schedule = IncrementalGamma(0.01, period=0.25)
    hooks = MaskTrainingHooks(masks, schedule)
    for batch in range(8):
        hooks.on_batch_start(sequential, batch, 8)
    assert schedule.periods_done == 3  # boundaries after steps 2, 4, 6; step 8's at epoch end
    record = EpochRecord(0, 1.0, 0.5, 0.2, 0.1)
    hooks.on_epoch_end(sequential, record)
    assert schedule.periods_done == 4
    assert record.extras["gamma"] == pytest.approx(0.05)
    assert record.extras["kept_fraction"] == pytest.approx(0.5, abs=0.01)
    assert not hooks.selectable()
    penalty = hooks.regulariser(sequential)
    torch.testing.assert_close(penalty, 0.05 * masks.compression_loss())


def test_fixed_rate_hooks_add_no_penalty_and_are_selectable(sequential) -> None:
    hooks = MaskTrainingHooks(attach_masks(sequential, 0.1, method="hydra"))
    assert hooks.regulariser(sequential) is None and hooks.selectable()
