"""PPO-RLHF: per-token rewards and GAE on a padded batch against plain loops, the KL controller,
and the trainer on a tiny model."""

import math

import pytest
import torch

from fastrl.nn.gpt import GPT, GPTConfig
from fastrl.rlhf.data import encode_prompts
from fastrl.rlhf.ppo import (
    AdaptiveKLController,
    PPOConfig,
    PPOTrainer,
    per_token_rewards,
    token_gae,
)
from tests.rlhf._tiny import PROMPTS, TOK, same_state, snapshot, tiny_models


def _padded_batch():
    g = torch.Generator().manual_seed(0)
    lengths = [5, 1, 3, 7]
    mask = torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]  # [4, 7], prefix masks
    logp, ref, values = (torch.randn(4, 7, generator=g, dtype=torch.float64) for _ in range(3))
    scores = torch.randn(4, generator=g, dtype=torch.float64)
    return lengths, mask, logp, ref, values, scores


def test_per_token_rewards_against_a_loop():
    lengths, mask, logp, ref, _, scores = _padded_batch()
    rewards = per_token_rewards(scores, logp, ref, mask, 0.3)
    for b, n in enumerate(lengths):
        for t in range(7):
            expected = 0.0 if t >= n else -0.3 * (logp[b, t] - ref[b, t]).item() + (scores[b].item() if t == n - 1 else 0.0)
            assert rewards[b, t].item() == pytest.approx(expected, abs=1e-12)


def test_token_gae_on_a_padded_batch_against_a_loop():
    lengths, mask, logp, ref, values, scores = _padded_batch()
    rewards = per_token_rewards(scores, logp, ref, mask, 0.1)
    gamma, lam = 0.99, 0.9
    adv, ret = token_gae(rewards, values, mask, gamma, lam)
    for b, n in enumerate(lengths):
        a_next = 0.0
        for t in reversed(range(n)):
            v_next = values[b, t + 1].item() if t + 1 < n else 0.0  # no bootstrap after the last token
            delta = rewards[b, t].item() + gamma * v_next - values[b, t].item()
            a_next = delta + gamma * lam * a_next
            assert adv[b, t].item() == pytest.approx(a_next, abs=1e-12)
            assert ret[b, t].item() == pytest.approx(a_next + values[b, t].item(), abs=1e-12)
        assert (adv[b, n:] == 0).all()


def test_adaptive_kl_controller():
    kl = AdaptiveKLController(0.1, target=2.0, horizon=100)
    kl.update(torch.tensor(4.0), 10)  # error clipped to +0.2
    assert kl.value.item() == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    kl.update(torch.tensor(1.5), 10)  # error -0.25 -> -0.2
    assert kl.value.item() == pytest.approx(0.1 * 1.02 * 0.98)
    fixed = AdaptiveKLController(0.1, target=None, horizon=100)
    fixed.update(torch.tensor(50.0), 10)
    assert fixed.value.item() == pytest.approx(0.1)


def test_trainer_runs_a_few_steps_on_a_tiny_model():
    policy, reward_model = tiny_models()
    trainer = PPOTrainer(policy, reward_model, TOK, PPOConfig(batch_size=8, max_new_tokens=6, lr=1e-2))
    reference = snapshot(trainer.reference)
    start = snapshot(policy)
    ids, mask = encode_prompts(PROMPTS * 2, TOK)
    history = [trainer.step(ids, mask)[0] for _ in range(3)]
    assert history[0]["kl"].item() == 0.0  # the policy starts as the reference
    for metrics in history:
        assert all(math.isfinite(v.item()) for v in metrics.values())
    assert same_state(trainer.reference, reference)
    assert not same_state(policy, start)
    assert history[-1]["kl"].item() != 0.0


def test_trainer_rejects_a_tokenizer_the_model_cannot_embed():
    policy, reward_model = tiny_models()
    small = GPT(GPTConfig(vocab_size=4, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="tokenizer has 7 ids but the policy embeds only 4"):
        PPOTrainer(small, reward_model, TOK, PPOConfig())
