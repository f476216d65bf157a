"""Equal training budgets: epochs counted per model, and stated in every report table."""
from __future__ import annotations

import pytest

from harp_plugin.pipeline.budget import epoch_budget
from harp_plugin.pipeline.config import RunConfig
from harp_plugin.reports.table import comparison_rows, format_markdown
from harp_plugin.robust.evaluation import EvaluationReport


@pytest.mark.parametrize(
    ("settings", "pruned_epochs"),
    [
        # 3 pre-train + 2 fine-tune after each of the 2 first rounds + 2 final fine-tune
        (dict(method="stability", prune_rounds=3), 3 + 2 * 2 + 2),
        # magnitude, one shot: pre-train + fine-tune
        (dict(method="magnitude"), 3 + 2),
        # HARP trains scores for prune_epochs on the training split
        (dict(method="harp", prune_epochs=4), 3 + 4 + 2),
        # LWM trains no scores
        (dict(method="lwm", prune_epochs=4), 3 + 2),
    ],
)
def test_pruned_budget_counts_every_training_epoch(settings, pruned_epochs) -> None:
    budget = epoch_budget(RunConfig(pretrain_epochs=3, finetune_epochs=2, **settings))
    assert budget.dense == 3
    assert budget.pruned == pruned_epochs
    assert budget.extra == pruned_epochs - 3
    assert budget.by_label() == {"dense": 3, "dense, same budget": pruned_epochs, "pruned": pruned_epochs}


def _report(clean: float, parameters: int) -> EvaluationReport:
    return EvaluationReport(clean, clean, {"PGD-20": clean / 2}, parameters, parameters, 10 * parameters, 0.0, 100)


def test_table_states_each_models_epochs_and_sizes_relative_to_the_first() -> None:
    columns = {"dense": _report(0.9, 1000), "dense, same budget": _report(0.92, 1000), "pruned": _report(0.8, 250)}
    rows = comparison_rows(columns, {"dense": 3, "dense, same budget": 7, "pruned": 7})
    assert rows[0] == ("training epochs", "3", "7", "7")
    by_metric = {row[0]: row[1:] for row in rows}
    assert by_metric["clean accuracy"] == ("90.00%", "92.00%", "80.00%")
    assert by_metric["parameters"][2] == "250 (25.0% of dense)"
    markdown = format_markdown(rows, tuple(columns))
    assert markdown.splitlines()[0] == "| metric | dense | dense, same budget | pruned |"
    assert "| training epochs | 3 | 7 | 7 |" in markdown
