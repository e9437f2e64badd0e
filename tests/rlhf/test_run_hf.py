"""RLHF runs of transformers models (fastrl.rlhf.run): save_pretrained at the end, exact resume;
tiny GPT-2 models built from a config (no download); skipped without transformers."""

import random

import pytest
import torch

transformers = pytest.importorskip("transformers")

from fastrl.nn.hf import HFCausalLM, HFScalar  # noqa: E402
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig  # noqa: E402
from fastrl.rlhf.run import train_run  # noqa: E402
from tests.rlhf._tiny import PROMPTS, TOK  # noqa: E402
from tests.rlhf.test_run import Crash, _rows, _same, _state  # noqa: E402


def _gpt2(cls, **kwargs):
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=TOK.vocab_size, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                     **kwargs)  # fmt: skip
    return cls(config)


def _length_reward(prompts, completions):
    return [float(len(c)) for c in completions]


def _noisy_length_reward(prompts, completions):
    # a reward function drawing from the global torch and Python RNGs: the checkpoint restores them
    return [len(c) + float(torch.rand(())) + random.random() for c in completions]


def test_ppo_run_saves_transformers_policy_and_critic(tmp_path):
    policy = HFCausalLM(_gpt2(transformers.GPT2LMHeadModel))
    critic = HFScalar(_gpt2(transformers.GPT2ForSequenceClassification, num_labels=1, pad_token_id=TOK.pad_id))
    trainer = PPOTrainer(policy, _length_reward, TOK, RLHFPPOConfig(batch_size=2, max_new_tokens=3), critic=critic)
    train_run(trainer, PROMPTS, 2, tmp_path)
    saved = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "policy", local_files_only=True)
    trained = policy.hf.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in saved.state_dict().items())
    wte = "transformer.wte.weight"
    assert not torch.equal(trained[wte], trainer.reference.hf.state_dict()[wte])  # it trained
    saved_critic = HFScalar.from_pretrained(str(tmp_path / "critic"))
    assert all(torch.equal(v, critic.hf.state_dict()[k]) for k, v in saved_critic.hf.state_dict().items())


def test_grpo_run_of_a_transformers_policy_resumes_exactly(tmp_path):
    def make():
        cfg = GRPOConfig(prompts_per_step=2, group_size=2, max_new_tokens=3, learning_rate=1e-2, seed=1)
        return GRPOTrainer(HFCausalLM(_gpt2(transformers.GPT2LMHeadModel)), _noisy_length_reward, TOK, cfg)

    straight = make()
    train_run(straight, PROMPTS, 3, tmp_path / "straight")

    def crash(it, metrics, gen):
        if it == 1:
            raise Crash

    with pytest.raises(Crash):
        train_run(make(), PROMPTS, 3, tmp_path / "resumed", checkpoint_every=1, on_step=crash)
    random.seed(7)  # the global RNGs elsewhere: the resumed run must not depend on them
    resumed = make()
    train_run(resumed, PROMPTS, 3, tmp_path / "resumed", resume=True)
    ours, theirs = _rows(tmp_path / "resumed"), _rows(tmp_path / "straight")
    for row in ours + theirs:
        del row["wall_time"]
    assert ours == theirs
    want, got = _state(straight), _state(resumed)
    assert [k for k in want if not _same(want[k], got[k])] == []
