"""split_indices and cap_indices: deterministic, disjoint, stratified."""
from __future__ import annotations

import pytest
import torch

from harp_plugin.data.partition import cap_indices, split_indices

SHUFFLE = torch.randperm(200, generator=torch.Generator().manual_seed(3))
LABELS = torch.arange(10).repeat_interleave(20)[SHUFFLE]


def test_splits_are_disjoint_and_cover_everything() -> None:
    parts = split_indices(LABELS, (0.7, 0.15, 0.15), seed=0)
    assert [len(p) for p in parts] == [140, 30, 30]
    assert torch.equal(torch.sort(torch.cat(parts)).values, torch.arange(200))


def test_a_prefix_of_a_split_of_class_ordered_data_mixes_the_classes() -> None:
    ordered = torch.arange(10).repeat_interleave(20)  # stored class by class, like mnist5k
    for part in split_indices(ordered, (0.7, 0.15, 0.15), seed=0):
        assert len(torch.unique(ordered[part[:15]])) >= 5


def test_each_split_keeps_the_class_balance() -> None:
    for part, per_class in zip(split_indices(LABELS, (0.5, 0.25, 0.25), seed=0), (10, 5, 5)):
        assert torch.bincount(LABELS[part], minlength=10).tolist() == [per_class] * 10


def test_same_seed_same_split_other_seed_other_split() -> None:
    first, again, other = (split_indices(LABELS, (0.8, 0.2), seed=s) for s in (4, 4, 5))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[1], other[1])


def test_fractions_below_one_leave_the_rest_unused() -> None:
    parts = split_indices(LABELS, (0.1, 0.1), seed=0)
    assert [len(p) for p in parts] == [20, 20]
    assert set(parts[0].tolist()).isdisjoint(parts[1].tolist())


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((), "at least one split"),
        ((0.5, -0.1), r"each lie in \[0, 1\], got \[0.5, -0.1\]"),
        ((0.7, 0.4), r"sum to at most 1, got \[0.7, 0.4\] \(sum 1.1\)"),
        ((float("nan"),), r"each lie in \[0, 1\]"),
    ],
)
def test_bad_fractions_are_named(fractions: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_indices(LABELS, fractions, seed=0)


def test_empty_labels_are_rejected() -> None:
    with pytest.raises(ValueError, match="empty dataset"):
        split_indices(torch.tensor([], dtype=torch.int64), (1.0,), seed=0)


def test_cap_is_a_seeded_subset() -> None:
    indices = torch.arange(100, 200)
    capped = cap_indices(indices, 10, seed=1)
    assert len(capped) == 10 and set(capped.tolist()) <= set(indices.tolist())
    assert torch.equal(capped, cap_indices(indices, 10, seed=1))
    assert cap_indices(indices, None, seed=1) is indices
    assert cap_indices(indices, 500, seed=1) is indices
