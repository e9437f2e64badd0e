"""GRPO: group advantages by hand and against a loop, the four loss normalizations by hand,
the first minibatch of an update (ratio 1, no clipping, the loss the normalization gives) and the
trainer on a tiny model."""

import copy
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import fastrl.rlhf.grpo as grpo
from fastrl.ops import NORMALIZATIONS, ppo_loss_from_hidden
from fastrl.rlhf.data import encode_prompts
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer, group_advantages
from tests.rlhf._tiny import PROMPTS, TOK, Spy, check_three_steps, eager_to_stop, tiny_models


def test_group_advantages_by_hand():
    scores = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])  # two groups of 3
    # group 1: mean 2, sample std 1; group 2: no spread
    torch.testing.assert_close(group_advantages(scores, 3, eps=0.0 + 1e-4),
                               torch.tensor([-1 / 1.0001, 0.0, 1 / 1.0001, 0.0, 0.0, 0.0]))  # fmt: skip
    torch.testing.assert_close(group_advantages(scores, 3, scale=False),
                               torch.tensor([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]))  # fmt: skip
    with pytest.raises(ValueError, match="do not split into groups of group_size = 4"):
        group_advantages(scores, 4)


def test_group_advantages_by_hand_in_float64():
    # groups of 4: [1, 2, 4, 5] (mean 3, sample variance (4 + 1 + 1 + 4) / 3), [7, 7, 7, 7] (no
    # spread: 0, not NaN), [0, 0, 0, 8] (mean 2, sample variance (4 * 3 + 36) / 3 = 16)
    scores = torch.tensor([1.0, 2.0, 4.0, 5.0, 7.0, 7.0, 7.0, 7.0, 0.0, 0.0, 0.0, 8.0], dtype=torch.float64)
    std = math.sqrt(10 / 3)
    expected = [d / (std + 1e-4) for d in (-2, -1, 1, 2)] + [0.0] * 4 + [d / (4 + 1e-4) for d in (-2, -2, -2, 6)]
    torch.testing.assert_close(group_advantages(scores, 4), torch.tensor(expected, dtype=torch.float64),
                               rtol=1e-14, atol=1e-14)  # fmt: skip
    assert group_advantages(scores, 4, eps=0.5)[11].item() == pytest.approx(6 / 4.5, rel=1e-14)
    assert group_advantages(scores, 4, scale=False).tolist() == [-2, -1, 1, 2, 0, 0, 0, 0, -2, -2, -2, 6]
    # pairs: mean 2 and sample std sqrt(2)
    torch.testing.assert_close(group_advantages(torch.tensor([3.0, 1.0], dtype=torch.float64), 2, eps=0.0),
                               torch.tensor([1 / math.sqrt(2), -1 / math.sqrt(2)], dtype=torch.float64))  # fmt: skip


def advantages_by_loop(scores, group_size, scale=True, eps=1e-4):
    """The GRPO advantage of each score, one group (contiguous) at a time."""
    out = []
    for start in range(0, len(scores), group_size):
        group = scores[start : start + group_size]
        mean = sum(group) / len(group)
        std = math.sqrt(sum((s - mean) ** 2 for s in group) / (len(group) - 1))
        out += [(s - mean) / (std + eps) if scale else s - mean for s in group]
    return out


@given(
    group_size=st.integers(2, 5),
    groups=st.integers(1, 4),
    data=st.data(),
    scale=st.booleans(),
)
def test_group_advantages_match_a_loop(group_size, groups, data, scale):
    values = st.integers(-20, 20).map(lambda x: x / 4)  # ties and no-spread groups are common
    scores = data.draw(st.lists(values, min_size=group_size * groups, max_size=group_size * groups))
    got = group_advantages(torch.tensor(scores, dtype=torch.float64), group_size, scale)
    torch.testing.assert_close(got, torch.tensor(advantages_by_loop(scores, group_size, scale), dtype=torch.float64),
                               rtol=1e-12, atol=1e-12)  # fmt: skip


# Three responses of at most T = 3 tokens; the third is all padding. With zero hidden states the
# logits are 0, so logp = -log V, and old log-probs -log V - log r make the ratio r (unclipped
# here). Per-token loss -r A: row 0: -1.1 * 1, -0.9 * 2; row 1: -1.0 * 4. Sum -6.9.
NORMALIZED_BY_HAND = {
    "token_mean": -6.9 / 3,  # over the 3 valid tokens
    "seq_mean_token_mean": (-2.9 / 2 - 4.0) / 2,  # over the 2 responses with a token
    "seq_mean_token_sum": -6.9 / 2,
    "constant": -6.9 / (3 * 4),  # max_len = 4, over all 3 rows
}


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_loss_normalizations_by_hand(normalize):
    vocab = 5
    hidden = torch.zeros(3, 3, 2, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(vocab, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ratio = torch.tensor([[1.1, 0.9, 7.0], [1.0, 7.0, 7.0], [7.0, 7.0, 7.0]], dtype=torch.float64)
    old = -math.log(vocab) - ratio.log()
    advantages = torch.tensor([[1.0, 2.0, 50.0], [4.0, 50.0, 50.0], [50.0, 50.0, 50.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]]).bool()
    actions = torch.tensor([[0, 3, 1], [2, 0, 0], [4, 4, 4]])
    loss, stats = ppo_loss_from_hidden(hidden, weight, actions, old, advantages, mask=mask, normalize=normalize,
                                       max_len=4)  # fmt: skip
    assert loss.item() == pytest.approx(NORMALIZED_BY_HAND[normalize], rel=1e-12)
    assert stats["clip_fraction"].item() == 0.0
    assert stats["ratio_max"].item() == pytest.approx(1.1, rel=1e-12)
    if normalize == "constant":  # without max_len: the width of the batch, T = 3
        loss, _ = ppo_loss_from_hidden(hidden, weight, actions, old, advantages, mask=mask, normalize=normalize)
        assert loss.item() == pytest.approx(-6.9 / 9, rel=1e-12)


def test_the_hand_worked_normalizations_differ():
    values = sorted(NORMALIZED_BY_HAND.values())
    assert all(b - a > 0.1 for a, b in zip(values, values[1:]))


def _expected_loss(normalize, advantages, lengths, max_len):
    """The loss when every ratio is 1 and the KL to the reference 0: each token of response i
    costs -A_i; responses have lengths >= 1."""
    sums = [-a * n for a, n in zip(advantages, lengths)]
    return {
        "token_mean": sum(sums) / sum(lengths),
        "seq_mean_token_mean": sum(-a for a in advantages) / len(advantages),
        "seq_mean_token_sum": sum(sums) / len(advantages),
        "constant": sum(sums) / (len(advantages) * max_len),
    }[normalize]


@pytest.mark.parametrize("scale_rewards", [True, False], ids=["scaled", "centred"])
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_first_minibatch_has_ratio_one_and_the_normalized_loss(monkeypatch, normalize, scale_rewards):
    policy, reward_model = tiny_models()
    eager_to_stop(policy)
    cfg = GRPOConfig(prompts_per_step=4, group_size=3, max_new_tokens=8, temperature=0.8, epochs=2, num_minibatches=2,
                     kl_coef=0.3, normalize=normalize, scale_rewards=scale_rewards)  # fmt: skip
    trainer = GRPOTrainer(policy, reward_model, TOK, cfg)
    spy = Spy(monkeypatch, grpo)
    ids, mask = encode_prompts(PROMPTS, TOK)
    _, gen = trainer.step(ids, mask)
    assert len(spy.calls) == 4 and len(spy.rows) == 4  # 2 epochs of 2 minibatches
    lengths = gen.response_mask.sum(1).tolist()
    assert gen.response.shape[1] < cfg.max_new_tokens and len(set(lengths)) > 2  # what the modes need

    # first minibatch of the first epoch: old log-probs are the policy's, the reference is the policy
    args, kwargs, (loss, stats) = spy.calls[0]
    assert stats["ratio_max"].item() == 1.0 and stats["ratio_mean"].item() == 1.0
    assert stats["clip_fraction"].item() == 0.0 and stats["approx_kl"].item() == 0.0
    assert stats["kl_ref"].item() == 0.0
    # every token of a response gets its group advantage, from the scores by a loop
    scores = reward_model.normalized(gen.ids, gen.mask).tolist()
    advantages = advantages_by_loop(scores, cfg.group_size, scale_rewards)
    rows = spy.rows[0]
    assert sorted(spy.rows[0] + spy.rows[1]) == list(range(12))
    torch.testing.assert_close(args[4], torch.tensor(advantages)[rows, None].expand(-1, gen.response.shape[1]))
    expected = {mode: _expected_loss(mode, [advantages[i] for i in rows], [lengths[i] for i in rows],
                                     cfg.max_new_tokens) for mode in NORMALIZATIONS}  # fmt: skip
    assert loss.item() == pytest.approx(expected[normalize], rel=1e-5, abs=1e-6)
    others = [v for mode, v in expected.items() if mode != normalize]
    assert min(abs(expected[normalize] - v) for v in others) > 1e-3  # the modes are told apart

    # after an optimizer step the ratios move (so the checks above could fail)
    assert all(call[2][1]["ratio_max"].item() != 1.0 for call in spy.calls[1:])


@pytest.mark.parametrize("normalize", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "constant"])
def test_trainer_runs_a_few_steps_on_a_tiny_model(normalize):
    policy, reward_model = tiny_models()
    cfg = GRPOConfig(prompts_per_step=4, group_size=4, max_new_tokens=6, learning_rate=1e-2, normalize=normalize)
    trainer = GRPOTrainer(policy, reward_model, TOK, cfg)
    check_three_steps(trainer, policy, PROMPTS)


def test_group_size_must_allow_a_comparison():
    with pytest.raises(ValueError, match=r"GRPOConfig.group_size must be >= 2, got 1"):
        GRPOConfig(group_size=1)


def _clipped_loss_by_formula(args, kwargs, cfg):
    """The GRPO loss of one minibatch from what the trainer passed (hidden states, LM head,
    tokens, old and reference log-probs, advantages, mask) and its config, by the formulas:
    clipped ratio objective plus kl_coef times the k3 KL, aggregated by ``cfg.normalize``.
    Also returns how many tokens each clip bound set."""
    hidden, weight, actions, old, advantages = args
    mask, ref = kwargs["mask"], kwargs["ref_logprobs"].double()
    logits = (hidden.detach().double() @ weight.detach().double().T) / cfg.temperature
    new = torch.log_softmax(logits, -1).gather(-1, actions[..., None])[..., 0]
    ratio, adv = torch.exp(new - old.double()), advantages.double()
    low, high = 1 - cfg.clip_low, 1 + (cfg.clip_low if cfg.clip_high is None else cfg.clip_high)
    pg = torch.maximum(-ratio * adv, -ratio.clamp(low, high) * adv)
    x = ref - new
    per_token = torch.where(mask, pg + cfg.kl_coef * (torch.exp(x) - x - 1), 0)
    lengths = mask.sum(1).tolist()
    sums = per_token.sum(1).tolist()
    loss = {
        "token_mean": sum(sums) / sum(lengths),
        "seq_mean_token_mean": sum(s / n for s, n in zip(sums, lengths)) / len(lengths),
        "seq_mean_token_sum": sum(sums) / len(lengths),
        "constant": sum(sums) / (len(lengths) * cfg.max_new_tokens),
    }[cfg.normalize]
    clipped_high = int((mask & (adv > 0) & (ratio > high)).sum())
    clipped_low = int((mask & (adv < 0) & (ratio < low)).sum())
    return loss, clipped_high, clipped_low


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_every_minibatch_loss_is_the_clipped_objective_with_the_config(monkeypatch, normalize):
    policy, reward_model = tiny_models()
    eager_to_stop(policy)
    cfg = GRPOConfig(prompts_per_step=4, group_size=3, max_new_tokens=8, temperature=0.8, epochs=3, num_minibatches=2,
                     learning_rate=3e-3, clip_low=0.01, clip_high=0.03, kl_coef=0.5, normalize=normalize)  # fmt: skip
    trainer = GRPOTrainer(policy, reward_model, TOK, cfg)
    spy = Spy(monkeypatch, grpo)
    ids, mask = encode_prompts(PROMPTS, TOK)
    _, gen = trainer.step(ids, mask)
    # each group holds G samples of one prompt, the prompts in their order
    prompts = gen.ids[:, : gen.prompt_len]
    assert torch.equal(prompts, prompts[:: cfg.group_size].repeat_interleave(cfg.group_size, 0))
    assert len({tuple(p) for p in prompts[:: cfg.group_size].tolist()}) == len(PROMPTS)
    high = low = 0
    for args, kwargs, (loss, _) in spy.calls:
        expected, clipped_high, clipped_low = _clipped_loss_by_formula(args, kwargs, cfg)
        assert loss.item() == pytest.approx(expected, rel=1e-4, abs=1e-6)
        high, low = high + clipped_high, low + clipped_low
    assert high > 0 and low > 0  # both clip bounds were reached, so both are checked


def logprobs_by_full_logits(model, gen, temperature):
    """Log-probs ``[B, N]`` of the response tokens from the model's full logits: the logits at
    column P - 1 + t score response token t; 0 at padding."""
    logits = model(gen.ids, gen.mask)[:, gen.prompt_len - 1 : -1].double() / temperature
    logp = torch.log_softmax(logits, -1).gather(-1, gen.response[..., None])[..., 0]
    return torch.where(gen.response_mask, logp, 0)


def test_a_later_step_uses_the_rolled_out_policy_and_the_initial_reference(monkeypatch):
    policy, reward_model = tiny_models()
    eager_to_stop(policy)
    cfg = GRPOConfig(prompts_per_step=4, group_size=3, max_new_tokens=8, temperature=0.8, learning_rate=3e-3,
                     kl_coef=0.5)
    trainer = GRPOTrainer(policy, reward_model, TOK, cfg)
    initial = copy.deepcopy(policy)
    ids, mask = encode_prompts(PROMPTS, TOK)
    trainer.step(ids, mask)
    rolled_out = copy.deepcopy(policy)  # the policy that samples the second step
    spy = Spy(monkeypatch, grpo)
    metrics, gen = trainer.step(ids, mask)
    old = logprobs_by_full_logits(rolled_out, gen, cfg.temperature)
    ref = logprobs_by_full_logits(initial, gen, cfg.temperature)
    assert (old - ref).abs().max() > 1e-3  # the first step moved the policy away from the reference
    args, kwargs, (_, stats) = spy.calls[0]
    rows = spy.rows[0]
    torch.testing.assert_close(args[3].double(), old[rows], rtol=0, atol=1e-5)
    torch.testing.assert_close(kwargs["ref_logprobs"].double(), ref[rows], rtol=0, atol=1e-5)
    assert stats["ratio_max"].item() == 1.0 and stats["clip_fraction"].item() == 0.0
    # the reported KL is the mean over responses of the summed log-ratio of their tokens
    assert metrics["kl"].item() == pytest.approx((old - ref).sum(1).mean().item(), abs=1e-5)


@pytest.mark.parametrize("loss", [dict(importance_level="sequence"), dict(policy_loss="cispo", kl_ratio_weighted=True)])
def test_the_loss_options_reach_the_op_and_train(monkeypatch, loss):
    """GSPO's sequence-level ratios, CISPO and the ratio-weighted KL: the config's values are the
    op's, and a few steps run with them."""
    policy, reward_model = tiny_models()
    cfg = GRPOConfig(prompts_per_step=4, group_size=4, max_new_tokens=6, learning_rate=1e-2, **loss)
    spy = Spy(monkeypatch, grpo)
    check_three_steps(GRPOTrainer(policy, reward_model, TOK, cfg), policy, PROMPTS)
    options = {**dict(importance_level="token", policy_loss="ppo", kl_ratio_weighted=False), **loss}
    assert spy.calls and all({k: kwargs[k] for k in options} == options for _, kwargs, _ in spy.calls)


def test_loss_options_are_checked():
    with pytest.raises(ValueError, match="GRPOConfig.importance_level"):
        GRPOConfig(importance_level="seq")
    with pytest.raises(ValueError, match="GRPOConfig.policy_loss"):
        GRPOConfig(policy_loss="gspo")
