"""The critic-free advantage estimators against hand-worked examples."""

import statistics

import pytest
import torch

from fastrl.rlhf.advantages import group_advantages, reinforce_pp_advantages, rloo_advantages


def test_rloo_subtracts_the_mean_of_the_other_responses():
    scores = torch.tensor([1.0, 2.0, 6.0, 0.0, 0.0, 3.0])
    # 1 - (2 + 6) / 2, 2 - (1 + 6) / 2, 6 - (1 + 2) / 2 | 0 - 1.5, 0 - 1.5, 3 - 0
    assert rloo_advantages(scores, 3).tolist() == [-3.0, -1.5, 4.5, -1.5, -1.5, 3.0]


def test_dr_grpo_only_centres_and_grpo_also_scales():
    scores = torch.tensor([1.0, 2.0, 6.0], dtype=torch.float64)
    assert group_advantages(scores, 3, scale=False).tolist() == [-2.0, -1.0, 3.0]
    std = statistics.stdev([1.0, 2.0, 6.0])  # the sample std, as GRPO's
    torch.testing.assert_close(group_advantages(scores, 3, eps=0.0),
                               torch.tensor([-2.0, -1.0, 3.0], dtype=torch.float64) / std)


def _whitened(values):
    mean, var = statistics.fmean(values), statistics.pvariance(values)
    return [(v - mean) / (var + 1e-8) ** 0.5 for v in values]


def test_reinforce_pp_folds_the_kl_into_token_rewards_and_whitens_the_returns():
    mask = torch.tensor([[True, True, False], [True, True, True]])
    scores = torch.tensor([1.0, -2.0], dtype=torch.float64)
    kl = torch.tensor([[0.5, 1.0, 9.0], [0.0, 0.5, 1.0]], dtype=torch.float64)
    # rewards: row 0 [-0.05, -0.1 + 1, pad], row 1 [0, -0.05, -0.1 - 2]; returns (gamma 1):
    returns = [0.85, 0.9, -2.15, -2.15, -2.1]
    out = reinforce_pp_advantages(scores, mask, kl, kl_coef=0.1)
    torch.testing.assert_close(out[mask], torch.tensor(_whitened(returns), dtype=torch.float64))
    assert out[0, 2] == 0  # padding


def test_reinforce_pp_baseline_centres_scores_per_group_and_discounts():
    mask = torch.tensor([[True, True, False], [True, True, True], [True, False, False], [False] * 3])
    scores = torch.tensor([1.0, -2.0, 4.0, 7.0], dtype=torch.float64)  # groups of two: means -0.5, 5.5
    kl = torch.tensor([[0.0, 0.5, 9.0], [0.0, 0.0, 0.5], [1.0, 9.0, 9.0], [9.0] * 3], dtype=torch.float64)
    out = reinforce_pp_advantages(scores, mask, kl, kl_coef=1.0, gamma=0.5, group_size=2)
    # rewards: row 0 [0, -0.5 + 1.5], row 1 [0, 0, -0.5 - 1.5], row 2 [-1 - 1.5] (one token), row 3 none
    expected = _whitened([0.5, 1.0, -0.5, -1.0, -2.0, -2.5])
    torch.testing.assert_close(out[mask], torch.tensor(expected, dtype=torch.float64))
    assert (out[~mask] == 0).all()


def test_reinforce_pp_without_kl_coef_ignores_kl():
    mask = torch.ones(2, 2, dtype=torch.bool)
    scores = torch.tensor([1.0, 3.0], dtype=torch.float64)
    with_kl = reinforce_pp_advantages(scores, mask, torch.full((2, 2), 5.0, dtype=torch.float64))
    torch.testing.assert_close(with_kl, reinforce_pp_advantages(scores, mask))


def test_reinforce_pp_whitens_with_a_given_function():
    mask = torch.ones(2, 2, dtype=torch.bool)
    seen = []
    out = reinforce_pp_advantages(torch.tensor([1.0, 3.0]), mask,
                                  whiten_over=lambda x, m: seen.append(x.clone()) or x)  # fmt: skip
    assert out.tolist() == [[1.0, 1.0], [3.0, 3.0]] and len(seen) == 1


@pytest.mark.parametrize("call, message", [
    (lambda: rloo_advantages(torch.ones(4), 1), "RLOO needs group_size >= 2"),
    (lambda: rloo_advantages(torch.ones(5), 2), "5 scores do not split into groups of group_size = 2"),
    (lambda: group_advantages(torch.ones(2, 2), 2), r"scores must be 1-D"),
    (lambda: reinforce_pp_advantages(torch.ones(3), torch.ones(2, 4, dtype=torch.bool)),
     r"scores must have shape \(2,\)"),
    (lambda: reinforce_pp_advantages(torch.ones(2), torch.ones(2, 4)), "mask must be a bool"),
    (lambda: reinforce_pp_advantages(torch.ones(2), torch.ones(2, 4, dtype=torch.bool), kl_coef=0.1),
     "kl_coef != 0 needs kl"),
    (lambda: reinforce_pp_advantages(torch.ones(2), torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 3)),
     r"kl must have mask's shape \(2, 4\)"),
], ids=["rloo-group-of-one", "rloo-uneven", "grpo-2d", "rpp-scores", "rpp-mask-dtype", "rpp-kl-coef-without-kl",
        "rpp-kl-shape"])  # fmt: skip
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
