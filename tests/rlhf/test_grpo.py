"""GRPO: group advantages by hand and the trainer on a tiny model."""

import math

import pytest
import torch

from fastrl.rlhf.data import encode_prompts
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer, group_advantages
from tests.rlhf._tiny import PROMPTS, TOK, same_state, snapshot, tiny_models


def test_group_advantages_by_hand():
    scores = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])  # two groups of 3
    # group 1: mean 2, sample std 1; group 2: no spread
    torch.testing.assert_close(group_advantages(scores, 3, eps=0.0 + 1e-4),
                               torch.tensor([-1 / 1.0001, 0.0, 1 / 1.0001, 0.0, 0.0, 0.0]))  # fmt: skip
    torch.testing.assert_close(group_advantages(scores, 3, scale=False),
                               torch.tensor([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]))  # fmt: skip
    with pytest.raises(ValueError, match="do not split into groups of 4"):
        group_advantages(scores, 4)


@pytest.mark.parametrize("normalize", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "constant"])
def test_trainer_runs_a_few_steps_on_a_tiny_model(normalize):
    policy, reward_model = tiny_models()
    cfg = GRPOConfig(prompts_per_step=4, group_size=4, max_new_tokens=6, lr=1e-2, normalize=normalize)
    trainer = GRPOTrainer(policy, reward_model, TOK, cfg)
    reference = snapshot(trainer.reference)
    start = snapshot(policy)
    ids, mask = encode_prompts(PROMPTS, TOK)
    history = [trainer.step(ids, mask)[0] for _ in range(3)]
    assert history[0]["kl"].item() == 0.0
    for metrics in history:
        assert all(math.isfinite(v.item()) for v in metrics.values())
    assert same_state(trainer.reference, reference)
    assert not same_state(policy, start)
    assert history[-1]["kl"].item() != 0.0


def test_group_size_must_allow_a_comparison():
    with pytest.raises(ValueError, match=r"GRPOConfig.group_size must be >= 2, got 1"):
        GRPOConfig(group_size=1)
