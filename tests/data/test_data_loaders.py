"""make_loaders: seeded shuffled training order, ordered evaluation, clear errors."""
from __future__ import annotations

import pytest
import torch

from harp_plugin.data import DataSplits, make_loaders
from harp_plugin.data.tensors import ImageTensorDataset


def tiny_splits(sizes: tuple[int, int, int] = (40, 12, 12)) -> DataSplits:
    """Image ``i`` of each split is filled with ``i`` so that batches reveal the order."""

    def part(n: int) -> ImageTensorDataset:
        images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
        return ImageTensorDataset(images, torch.arange(n) % 10, scale=255.0)

    train, val, test = (part(n) for n in sizes)
    return DataSplits("tiny", train, val, test, 10, 1, 4, (0.5,), (0.25,))


def order(loader) -> list[int]:
    return [int(round(v * 255)) for images, _ in loader for v in images[:, 0, 0, 0].tolist()]


def test_train_order_is_shuffled_and_depends_only_on_seed() -> None:
    splits = tiny_splits()
    first = order(make_loaders(splits, batch_size=8, seed=0)[0])
    assert first == order(make_loaders(splits, batch_size=8, seed=0)[0])
    assert first != order(make_loaders(splits, batch_size=8, seed=1)[0])
    assert first != list(range(40)) and sorted(first) == list(range(40))


def test_eval_loaders_keep_split_order_and_batch_size() -> None:
    _, val, test = make_loaders(tiny_splits(), batch_size=5)
    assert order(val) == list(range(12)) and order(test) == list(range(12))
    images, labels = next(iter(val))
    assert images.shape == (5, 1, 4, 4) and images.dtype == torch.float32
    assert labels.dtype == torch.int64


def test_empty_split_is_named() -> None:
    with pytest.raises(ValueError, match="the val split of dataset 'tiny' is empty"):
        make_loaders(tiny_splits((4, 0, 4)), batch_size=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"batch_size": 4, "num_workers": -1}, "num_workers must be a non-negative .* got -1"),
    ],
)
def test_bad_loader_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_loaders(tiny_splits(), **kwargs)
