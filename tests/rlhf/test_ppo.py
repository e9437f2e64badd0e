"""PPO-RLHF: per-token rewards and GAE on a padded batch against plain loops, the KL controller,
the first minibatch of an update against advantages and returns computed by loops (ratio 1, no
clipping), and the trainer on a tiny model."""

import copy
import math

import pytest
import torch

import fastrl.rlhf.ppo as ppo
from fastrl.nn.gpt import GPT, GPTConfig
from fastrl.rlhf.data import encode_prompts
from fastrl.rlhf.ppo import (
    AdaptiveKLController,
    PPOTrainer,
    RLHFPPOConfig,
    per_token_rewards,
    token_gae,
)
from fastrl.rlhf.rollout import response_values
from tests.rlhf._tiny import PROMPTS, TOK, Spy, check_three_steps, eager_to_stop, tiny_models


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
            score = scores[b].item() if t == n - 1 else 0.0
            expected = 0.0 if t >= n else -0.3 * (logp[b, t] - ref[b, t]).item() + score
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
    cfg = RLHFPPOConfig(batch_size=8, max_new_tokens=6, learning_rate=1e-2)
    trainer = PPOTrainer(policy, reward_model, TOK, cfg)
    check_three_steps(trainer, policy, PROMPTS * 2)


def test_trainer_rejects_a_tokenizer_the_model_cannot_embed():
    policy, reward_model = tiny_models()
    small = GPT(GPTConfig(vocab_size=4, block_size=16, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="tokenizer has 7 ids but the policy embeds only 4"):
        PPOTrainer(small, reward_model, TOK, RLHFPPOConfig())


def _advantages_by_loops(scores, values, lengths, gamma, lam):
    """First-step GAE of each response (the policy is the reference, so the KL reward is 0 and
    only the score, on the last token, is a reward), then whitened over all response tokens
    (population variance). Returns (whitened advantages, raw advantages), lists of lists."""
    raw = []
    for b, n in enumerate(lengths):
        row, next_adv = [0.0] * n, 0.0
        for t in reversed(range(n)):
            reward = scores[b] if t == n - 1 else 0.0
            next_value = values[b][t + 1] if t + 1 < n else 0.0
            next_adv = reward + gamma * next_value - values[b][t] + gamma * lam * next_adv
            row[t] = next_adv
        raw.append(row)
    flat = [a for row in raw for a in row]
    mean = sum(flat) / len(flat)
    std = math.sqrt(sum((a - mean) ** 2 for a in flat) / len(flat) + 1e-8)
    return [[(a - mean) / std for a in row] for row in raw], raw


def test_first_minibatch_against_advantages_and_returns_by_loops(monkeypatch):
    policy, reward_model = tiny_models()
    eager_to_stop(policy)
    cfg = RLHFPPOConfig(batch_size=8, max_new_tokens=8, temperature=0.8, epochs=2, num_minibatches=2, gamma=0.9,
                        gae_lambda=0.8, kl_coef=0.2, value_clip=0.05)  # fmt: skip
    trainer = PPOTrainer(policy, reward_model, TOK, cfg)
    critic = copy.deepcopy(trainer.critic)  # the critic at the rollout (the update trains it)
    spy = Spy(monkeypatch, ppo)
    value_calls = []
    real_value_loss = ppo.value_loss

    def value_loss(*args, **kwargs):
        value_calls.append(real_value_loss(*args, **kwargs))
        return value_calls[-1]

    monkeypatch.setattr(ppo, "value_loss", value_loss)
    ids, mask = encode_prompts(PROMPTS * 2, TOK)
    _, gen = trainer.step(ids, mask)
    assert len(spy.calls) == 4 and len(value_calls) == 4

    lengths = gen.response_mask.sum(1).tolist()
    scores = reward_model.normalized(gen.ids, gen.mask).tolist()
    values = response_values(critic, gen).tolist()
    whitened, raw = _advantages_by_loops(scores, values, lengths, cfg.gamma, cfg.gae_lambda)

    # the advantages of both minibatches of the first epoch: whitened over the whole batch
    for (args, _, _), rows in zip(spy.calls[:2], spy.rows[:2]):
        for k, b in enumerate(rows):
            torch.testing.assert_close(args[4][k, : lengths[b]], torch.tensor(whitened[b]), rtol=1e-4, atol=1e-5)
    assert sorted(spy.rows[0] + spy.rows[1]) == list(range(8))

    # first minibatch: ratio 1, nothing clipped, loss = -(token mean of the advantages)
    _, _, (loss, stats) = spy.calls[0]
    assert stats["ratio_max"].item() == 1.0 and stats["ratio_mean"].item() == 1.0
    assert stats["clip_fraction"].item() == 0.0 and stats["approx_kl"].item() == 0.0
    rows = spy.rows[0]
    first = [a for b in rows for a in whitened[b]]
    assert loss.item() == pytest.approx(-sum(first) / len(first), rel=1e-4, abs=1e-6)
    # ... and the critic, not yet trained, is off its returns (values + raw advantages) by the
    # raw advantages: value loss = mean of A^2 / 2
    squares = [a * a / 2 for b in rows for a in raw[b]]
    assert value_calls[0].item() == pytest.approx(sum(squares) / len(squares), rel=1e-4)
    assert all(call[2][1]["ratio_max"].item() != 1.0 for call in spy.calls[1:])


def test_the_loss_options_reach_the_op_and_train(monkeypatch):
    """importance_level and policy_loss: the config's values are the op's, and a few steps run."""
    policy, reward_model = tiny_models()
    cfg = RLHFPPOConfig(batch_size=8, max_new_tokens=6, learning_rate=1e-2, importance_level="sequence",
                        policy_loss="cispo")  # fmt: skip
    spy = Spy(monkeypatch, ppo)
    check_three_steps(PPOTrainer(policy, reward_model, TOK, cfg), policy, PROMPTS * 2)
    assert spy.calls and all(kwargs["importance_level"] == "sequence" and kwargs["policy_loss"] == "cispo"
                             for _, kwargs, _ in spy.calls)  # fmt: skip
    with pytest.raises(ValueError, match="RLHFPPOConfig.policy_loss"):
        RLHFPPOConfig(policy_loss="grpo")
