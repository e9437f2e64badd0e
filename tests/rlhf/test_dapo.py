"""DAPO's options in GRPOTrainer: the overlong soft penalty by hand, and dynamic sampling (groups
whose scores are all equal dropped, the batch filled again from further prompts)."""

import pytest
import torch

from fastrl.rlhf.advantages import overlong_penalty
from fastrl.rlhf.data import encode_prompts
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer
from fastrl.rlhf.rollout import train_on_prompts
from fastrl.utils.config import ConfigError
from tests.rlhf._tiny import TOK, eager_to_stop, tiny_models


def test_overlong_penalty_by_hand():
    lengths = torch.tensor([3, 4, 5, 6, 8])
    # max_len 8, buffer 4: no penalty up to 4 tokens, then (4 - L) / 4 times the factor 0.5
    assert overlong_penalty(lengths, 8, 4, 0.5).tolist() == [0.0, 0.0, -0.125, -0.25, -0.5]
    assert overlong_penalty(lengths, 8, 0, 0.5).tolist() == [0.0] * 5
    with pytest.raises(ValueError, match="buffer must be in"):
        overlong_penalty(lengths, 8, 9)


def test_grpo_adds_the_overlong_penalty_to_the_scores():
    policy, _ = tiny_models()
    cfg = GRPOConfig(prompts_per_step=2, group_size=4, max_new_tokens=6, overlong_buffer=3, overlong_penalty=2.0)
    trainer = GRPOTrainer(eager_to_stop(policy), lambda p, c: [1.0] * len(c), TOK, cfg)
    metrics, gen = trainer.step(*encode_prompts(["ab=", "c="], TOK))
    lengths = gen.response_mask.sum(1).tolist()
    assert len(set(lengths)) > 1  # a mix of lengths, so the penalty differs between responses
    by_hand = [1.0 - 2.0 * max(0, n - 3) / 3 for n in lengths]
    assert metrics["score"].item() == pytest.approx(sum(by_hand) / len(by_hand))
    with pytest.raises(ConfigError, match="overlong_buffer must be at most max_new_tokens = 6"):
        GRPOConfig(max_new_tokens=6, overlong_buffer=7)


def _by_prompt(prompts, completions):
    """Every response to 'c=' scores 1 (a group with nothing to learn); the others score their
    length, which varies."""
    return [1.0 if p == "c=" else float(len(c)) for p, c in zip(prompts, completions)]


def _decoded_prompts(gen):
    return [TOK.decode(row[m]) for row, m in zip(gen.ids[:, : gen.prompt_len], gen.mask[:, : gen.prompt_len])]


def test_dynamic_sampling_replaces_groups_without_spread():
    policy, _ = tiny_models()
    cfg = GRPOConfig(prompts_per_step=2, group_size=4, max_new_tokens=6, dynamic_sampling=True,
                     max_sampling_rounds=5)  # fmt: skip
    trainer = GRPOTrainer(eager_to_stop(policy), _by_prompt, TOK, cfg)
    draws = []

    def more_prompts():
        draws.append(1)
        return encode_prompts(["ab=", "dda="], TOK)

    metrics, gen = trainer.step(*encode_prompts(["c=", "b="], TOK), more_prompts=more_prompts)
    prompts = _decoded_prompts(gen)
    assert len(prompts) == 8 and "c=" not in prompts  # the c= group was dropped, the batch refilled
    assert prompts[:4] == ["b="] * 4  # kept groups in the order sampled: b= first
    scores = torch.tensor(_by_prompt(prompts, [TOK.decode(r[m]) for r, m in zip(gen.response, gen.response_mask)]))
    groups = scores.view(-1, 4)
    assert (groups != groups[:, :1]).any(1).all()  # every group trained on has a spread
    assert metrics["sampling_rounds"].item() == 1 + len(draws) and metrics["groups_with_spread"].item() == 1


def test_dynamic_sampling_fills_a_short_batch_with_dropped_groups():
    policy, _ = tiny_models()
    cfg = GRPOConfig(prompts_per_step=2, group_size=3, max_new_tokens=4, dynamic_sampling=True,
                     max_sampling_rounds=2)  # fmt: skip
    trainer = GRPOTrainer(policy, _by_prompt, TOK, cfg)
    metrics, gen = trainer.step(*encode_prompts(["c=", "c="], TOK))  # resamples these: still no spread
    assert _decoded_prompts(gen) == ["c="] * 6
    assert metrics["sampling_rounds"].item() == 2 and metrics["groups_with_spread"].item() == 0


def test_train_draws_further_prompts_from_its_pool():
    policy, _ = tiny_models()
    cfg = GRPOConfig(prompts_per_step=2, group_size=3, max_new_tokens=4, dynamic_sampling=True,
                     max_sampling_rounds=4)  # fmt: skip
    trainer = GRPOTrainer(eager_to_stop(policy), _by_prompt, TOK, cfg)
    seen = []
    train_on_prompts(trainer, ["c=", "ab=", "dda="], 2, cfg.prompts_per_step,
                     on_step=lambda it, m, gen: seen.append((_decoded_prompts(gen), m["sampling_rounds"].item())))
    for prompts, rounds in seen:
        assert len(prompts) == 6
        assert rounds == cfg.max_sampling_rounds or "c=" not in prompts
