"""GRPOTrainer's critic-free advantage estimators (``advantage_estimator``): the trainer's
advantage step against hand-worked values, the loss each one feeds, and the config check."""

import math

import pytest
import torch

import fastrl.rlhf.grpo as grpo
from fastrl.rlhf.data import encode_prompts
from fastrl.rlhf.grpo import ADVANTAGE_ESTIMATORS, GRPOConfig, GRPOTrainer
from fastrl.utils.config import ConfigError
from tests.rlhf._tiny import PROMPTS, TOK, Spy, tiny_models

# Two prompts, groups of 2; responses of 2, 1, 3 and 2 tokens (N = 3).
SCORES = torch.tensor([1.0, 3.0, 2.0, 2.0], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]], dtype=torch.bool)
LOGP = torch.tensor([[-1.0, -2.0, 0.0], [-1.0, 0.0, 0.0], [-0.5, -0.5, -0.5], [-2.0, -1.0, 0.0]],
                    dtype=torch.float64)  # fmt: skip
REF = LOGP - torch.tensor([[0.5, 1.0, 7.0], [2.0, 7.0, 7.0], [0.0, 1.0, -1.0], [1.0, 0.0, 7.0]],
                          dtype=torch.float64)  # fmt: skip (KL at padding: 7, must not count)


def _trainer(**cfg):
    policy, reward_model = tiny_models()
    return GRPOTrainer(policy, reward_model, TOK, GRPOConfig(group_size=2, **cfg))


def _whitened(values):
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return [(v - mean) / math.sqrt(var + 1e-8) for v in values]


def _per_response(values):
    return torch.tensor(values, dtype=torch.float64)[:, None].expand(4, 3)


@pytest.mark.parametrize(
    ("estimator", "scale", "expected"),
    [
        # group 1: mean 2, sample std sqrt(2); group 2: no spread
        ("grpo", True, [-1 / (math.sqrt(2) + 1e-4), 1 / (math.sqrt(2) + 1e-4), 0.0, 0.0]),
        ("grpo", False, [-1.0, 1.0, 0.0, 0.0]),
        ("dr_grpo", True, [-1.0, 1.0, 0.0, 0.0]),  # never scaled
        ("rloo", True, [1.0 - 3.0, 3.0 - 1.0, 0.0, 0.0]),  # minus the other response's score
    ],
)
def test_per_response_estimators_by_hand(estimator, scale, expected):
    trainer = _trainer(advantage_estimator=estimator, scale_rewards=scale)
    got = trainer.advantages(SCORES, LOGP, REF, MASK)
    torch.testing.assert_close(got, _per_response(expected), rtol=1e-12, atol=1e-12)


def test_reinforce_pp_folds_the_kl_into_the_token_rewards_by_hand():
    trainer = _trainer(advantage_estimator="reinforce_pp", kl_coef=0.1)
    # rewards -0.1 * KL_t, plus the score on the last token; returns summed backwards (gamma 1):
    # row 0: [-0.05, -0.1 + 1]          -> [0.85, 0.9]
    # row 1: [-0.2 + 3]                 -> [2.8]
    # row 2: [0, -0.1, 0.1 + 2]         -> [2.0, 2.0, 2.1]
    # row 3: [-0.1, 0 + 2]              -> [1.9, 2.0]
    returns = [0.85, 0.9, 2.8, 2.0, 2.0, 2.1, 1.9, 2.0]
    got = trainer.advantages(SCORES, LOGP, REF, MASK)
    torch.testing.assert_close(got[MASK], torch.tensor(_whitened(returns), dtype=torch.float64))
    assert got[~MASK].eq(0).all()


def test_reinforce_pp_baseline_takes_the_group_mean_off_first_by_hand():
    trainer = _trainer(advantage_estimator="reinforce_pp_baseline", kl_coef=0.1)
    # scores minus their group mean: [-1, 1, 0, 0]; the KL rewards as above
    returns = [-1.15, -1.1, 0.8, 0.0, 0.0, 0.1, -0.1, 0.0]
    got = trainer.advantages(SCORES, LOGP, REF, MASK)
    torch.testing.assert_close(got[MASK], torch.tensor(_whitened(returns), dtype=torch.float64))


def test_reinforce_pp_at_kl_coef_zero_needs_no_reference():
    trainer = _trainer(advantage_estimator="reinforce_pp", kl_coef=0.0)
    returns = [1.0, 1.0, 3.0, 2.0, 2.0, 2.0, 2.0, 2.0]  # the score on every token
    got = trainer.advantages(SCORES, LOGP, None, MASK)
    torch.testing.assert_close(got[MASK], torch.tensor(_whitened(returns), dtype=torch.float64))


@pytest.mark.parametrize("estimator", ADVANTAGE_ESTIMATORS)
def test_each_estimator_feeds_the_loss_and_trains(monkeypatch, estimator):
    policy, reward_model = tiny_models()
    cfg = GRPOConfig(prompts_per_step=2, group_size=3, max_new_tokens=5, epochs=1, num_minibatches=2,
                     kl_coef=0.2, advantage_estimator=estimator)  # fmt: skip
    trainer = GRPOTrainer(policy, reward_model, TOK, cfg)
    spy = Spy(monkeypatch, grpo)
    ids, mask = encode_prompts(PROMPTS[:2], TOK)
    metrics, gen = trainer.step(ids, mask)
    assert all(torch.isfinite(v) for v in metrics.values())
    for args, kwargs, _ in spy.calls:
        advantages = args[4]
        if estimator.startswith("reinforce_pp"):  # the KL is in the advantages, not in the loss
            assert kwargs["kl_coef"] == 0 and kwargs["ref_logprobs"] is None
            assert "kl_ref_k3" not in metrics and "kl" in metrics
        else:  # one advantage per response, on every token
            assert kwargs["kl_coef"] == 0.2 and kwargs["ref_logprobs"] is not None
            assert torch.equal(advantages, advantages[:, :1].expand_as(advantages))


def test_advantage_estimator_is_checked():
    with pytest.raises(ConfigError, match="advantage_estimator") as caught:
        GRPOConfig(advantage_estimator="ppo")
    assert "rloo" in str(caught.value)
    cfg = GRPOConfig()
    cfg.advantage_estimator = "gae"  # changed after construction: caught when a trainer starts
    policy, reward_model = tiny_models()
    with pytest.raises(ConfigError, match="advantage_estimator"):
        GRPOTrainer(policy, reward_model, TOK, cfg)
