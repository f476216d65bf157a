"""Snake dealing and the grouped-kernel beam search against hand-worked cases."""
import itertools

import pytest
import torch

from harp_plugin.grouped import BeamSearch, selection_cost, similarity, snake_groups


def test_snake_order_deals_smoothest_first_back_and_forth() -> None:
    # Filter i has smoothness 10 - i, so the smoothest is filter 9, then 8, ...
    smoothness = torch.tensor([10.0 - i for i in range(8)])
    # Sorted: 7, 6, 5, 4, 3, 2, 1, 0 -> groups 0,1,2,2,1,0,0,1 ... with 3 groups 8 does not divide.
    with pytest.raises(ValueError, match="8 filters cannot be dealt into 3 equal groups"):
        snake_groups(smoothness, 3)
    # Sorted order 7 6 5 4 3 2 1 0 into 2 groups: 7->g0, 6->g1, 5->g1, 4->g0, 3->g0, 2->g1, 1->g1, 0->g0.
    assert snake_groups(smoothness, 2) == [[7, 4, 3, 0], [6, 5, 2, 1]]


def test_cost_matches_a_hand_computation() -> None:
    # Three 1-D grouped kernels at 0, 1 and 3: distances 1, 3, 2 -> sims 0, -2, -1.
    sim = similarity(torch.tensor([[0.0], [1.0], [3.0]]))
    assert sim[0, 1] == pytest.approx(0.0) and sim[0, 2] == pytest.approx(-2.0) and sim[1, 2] == pytest.approx(-1.0)
    # K = {0, 2}: pair sum -2; lambda = 1 pair / 1 pruned = 1; channel 1's best kept sim = max(0, -1) = 0.
    assert selection_cost(sim, [0, 2]) == pytest.approx(-2.0)
    # K = {0, 1}: pair sum 0; channel 2's best = max(-2, -1) = -1 -> cost 0 - 1*(-1) = 1.
    assert selection_cost(sim, [0, 1]) == pytest.approx(1.0)


def test_beam_search_keeps_one_of_each_duplicate_pair() -> None:
    torch.manual_seed(0)
    a, b, c = torch.randn(3, 2, 3, 3)
    kernels = torch.stack([a, a, b, b, c, c])  # channels 0=1, 2=3, 4=5
    kept = BeamSearch().select(kernels, torch.zeros(6), 3)
    assert sorted(k // 2 for k in kept) == [0, 1, 2]
    # and it is the optimum of the cost over all 20 three-channel subsets
    sim = similarity(kernels)
    best = min(selection_cost(sim, list(s)) for s in itertools.combinations(range(6), 3))
    assert selection_cost(sim, kept) == pytest.approx(best)


def test_smoothness_rank_decides_between_equal_costs() -> None:
    # Four identical grouped kernels: every pair costs the same, smoothness alone differs.
    kernels = torch.ones(4, 1, 3, 3)
    kept = BeamSearch().select(kernels, torch.tensor([5.0, 1.0, 4.0, 2.0]), 2)
    assert kept == [1, 3]


def test_bad_settings_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="cannot keep 5 of 4 input channels"):
        BeamSearch().select(torch.ones(4, 1, 3, 3), torch.zeros(4), 5)
    with pytest.raises(ValueError, match="invalid beam search settings"):
        BeamSearch(width=0)
