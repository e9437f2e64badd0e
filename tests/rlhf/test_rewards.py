"""Reward functions (TRL's ``(prompts, completions) -> list[float]``) in place of a reward model:
weighted sums by hand, what the trainers pass them, and the errors for bad returns."""

import math

import numpy as np
import pytest
import torch

from fastrl.rlhf.data import encode_prompts
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig
from fastrl.rlhf.rewards import RewardFunctions
from tests.rlhf._tiny import PROMPTS, TOK, eager_to_stop, tiny_models


def length(prompts, completions):
    return [float(len(c)) for c in completions]


def count_a(prompts, completions):
    return [c.count("a") for c in completions]


def test_weighted_sum_by_hand():
    rewards = RewardFunctions([length, count_a], weights=[0.5, -2])
    # "aab": 0.5 * 3 - 2 * 2; "": 0; "cd": 0.5 * 2
    assert rewards(["x", "y", "z"], ["aab", "", "cd"]) == [-2.5, 0.0, 1.0]
    assert RewardFunctions(count_a)(["x"], ["aaa"]) == [3.0]  # one function, weight 1
    # numpy and torch values are numbers too
    assert RewardFunctions(lambda p, c: np.array([1.5, 2]))(["x", "y"], ["a", "b"]) == [1.5, 2.0]
    assert RewardFunctions(lambda p, c: torch.tensor([1.5, 2]))(["x", "y"], ["a", "b"]) == [1.5, 2.0]


def test_bad_returns_name_the_function_and_the_prompt():
    def two(prompts, completions):
        return [1.0, 2.0]

    with pytest.raises(ValueError, match=r"reward function 'two' returned 2 values for 3 completions"):
        RewardFunctions(two)(["p", "q", "r"], ["a", "b", "c"])

    def nan_for_q(prompts, completions):
        return [math.nan if p == "q" else 1.0 for p in prompts]

    with pytest.raises(ValueError, match=r"'nan_for_q' returned nan for completion 1 'b' of prompt 'q'"):
        RewardFunctions(nan_for_q)(["p", "q"], ["a", "b"])
    with pytest.raises(ValueError, match=r"returned inf for completion 0"):
        RewardFunctions(lambda p, c: [math.inf])(["p"], ["a"])
    with pytest.raises(ValueError, match=r"returned 'x' for completion 0 'a' of prompt 'p'"):
        RewardFunctions(lambda p, c: ["x"])(["p"], ["a"])
    with pytest.raises(ValueError, match=r"returned a float for 1 completions"):
        RewardFunctions(lambda p, c: 1.0)(["p"], ["a"])
    with pytest.raises(TypeError, match="reward function 1 must be a callable"):
        RewardFunctions([length, "length"])
    with pytest.raises(ValueError, match="reward_weights has 1 weights for 2 reward functions"):
        RewardFunctions([length, count_a], weights=[1.0])
    with pytest.raises(ValueError, match=r"reward_weights\[0\] must be a finite number"):
        RewardFunctions(length, weights=[math.nan])


def test_grpo_scores_the_decoded_text_with_the_weighted_functions():
    seen = []

    def record(prompts, completions):
        seen.append((prompts, completions))
        return [float(len(c)) for c in completions]

    policy, _ = tiny_models()
    cfg = GRPOConfig(prompts_per_step=2, group_size=3, max_new_tokens=5, kl_coef=0.0)
    trainer = GRPOTrainer(eager_to_stop(policy), [record, count_a], TOK, cfg, reward_weights=[1.0, 10.0])
    ids, mask = encode_prompts(PROMPTS[2:], TOK)  # "dda=", "b=": different lengths, left-padded
    metrics, gen = trainer.step(ids, mask)
    (prompts, completions), = seen
    assert prompts == ["dda="] * 3 + ["b="] * 3
    # the sampled responses, read token by token (ids 0 and 1, padding and EOS, are no characters)
    expected = []
    for row, row_mask in zip(gen.response.tolist(), gen.response_mask.tolist()):
        expected.append("".join(TOK.alphabet[t - 2] for t, m in zip(row, row_mask) if m and t >= 2))
    assert completions == expected
    scores = [len(c) + 10 * c.count("a") for c in expected]
    assert metrics["score"].item() == pytest.approx(sum(scores) / len(scores))


def test_grpo_reports_a_bad_reward_function_with_its_prompt():
    policy, _ = tiny_models()
    cfg = GRPOConfig(prompts_per_step=1, group_size=2, max_new_tokens=3)
    trainer = GRPOTrainer(policy, lambda p, c: [math.nan] * len(c), TOK, cfg)
    with pytest.raises(ValueError, match=r"'<lambda>' returned nan for completion 0 .* of prompt 'ab='"):
        trainer.step(*encode_prompts(PROMPTS[:1], TOK))


def test_ppo_takes_reward_functions():
    policy, _ = tiny_models()
    cfg = RLHFPPOConfig(batch_size=4, max_new_tokens=4)
    trainer = PPOTrainer(policy, count_a, TOK, cfg)
    metrics, gen = trainer.step(*encode_prompts(PROMPTS, TOK))
    responses = [TOK.decode(r[m]) for r, m in zip(gen.response, gen.response_mask)]
    assert metrics["score"].item() == pytest.approx(sum(r.count("a") for r in responses) / 4)
    with pytest.raises(ValueError, match="reward_weights apply to reward functions"):
        PPOTrainer(policy, tiny_models()[1], TOK, cfg, reward_weights=[1.0])
