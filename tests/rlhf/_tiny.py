"""A tiny policy and reward model for trainer smoke tests."""

import math

import torch

import fastrl.rlhf.rollout as rollout
from fastrl.nn.gpt import GPT, GPTConfig
from fastrl.rlhf.data import encode_prompts
from fastrl.rlhf.reward_model import RewardModel
from fastrl.rlhf.tokenizer import CharTokenizer

TOK = CharTokenizer("abcd=")
CFG = GPTConfig(vocab_size=TOK.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16)
PROMPTS = ["ab=", "c=", "dda=", "b="]


def tiny_models(seed=0):
    torch.manual_seed(seed)
    return GPT(CFG), RewardModel(CFG).requires_grad_(False)


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_state(model, state):
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def check_three_steps(trainer, policy, prompts):
    """Three steps of ``trainer`` on ``prompts``: the first has KL 0 (the policy starts as the
    reference), every metric is finite, the reference stays frozen, the policy and its KL move."""
    reference, start = snapshot(trainer.reference), snapshot(policy)
    ids, mask = encode_prompts(prompts, TOK)
    history = [trainer.step(ids, mask)[0] for _ in range(3)]
    assert history[0]["kl"].item() == 0.0
    for metrics in history:
        assert all(math.isfinite(v.item()) for v in metrics.values())
    assert same_state(trainer.reference, reference)
    assert not same_state(policy, start)
    assert history[-1]["kl"].item() != 0.0


def eager_to_stop(policy, eos_logit=1.5):
    """Makes ``policy`` likely to emit EOS (about 0.4 per token), so that sampled responses end at
    different lengths and a batch stops before max_new_tokens: the final LayerNorm's output is
    shrunk and shifted toward EOS's embedding (the LM head is tied to it)."""
    with torch.no_grad():
        eos = policy.lm_head.weight[TOK.eos_id]
        policy.trunk.ln_f.weight.mul_(0.3)
        policy.trunk.ln_f.bias.copy_(eos_logit * eos / eos.dot(eos))
    return policy


class Spy:
    """Records every call of ``module.ppo_loss_from_hidden`` (copies of its args and kwargs, and
    its (loss, stats)) and the rows of every ``response_hidden`` call (the trainers call it
    once per minibatch, after the rollout)."""

    def __init__(self, monkeypatch, module):
        self.calls, self.rows = [], []
        loss_fn, hidden_fn = module.ppo_loss_from_hidden, module.response_hidden

        def loss(*args, **kwargs):
            out = loss_fn(*args, **kwargs)
            # copies: the optimizer step changes the LM head's weight in place after this call
            copy = lambda x: x.detach().clone() if isinstance(x, torch.Tensor) else x
            self.calls.append(([copy(a) for a in args], {k: copy(v) for k, v in kwargs.items()}, out))
            return out

        def hidden(model, gen, rows=slice(None)):
            if isinstance(rows, torch.Tensor):  # a minibatch's forward (the no-grad passes take all rows)
                self.rows.append(rows.tolist())
            return hidden_fn(model, gen, rows)

        monkeypatch.setattr(module, "ppo_loss_from_hidden", loss)
        monkeypatch.setattr(module, "response_hidden", hidden)
        # the first minibatch's forward of a single pass is made in rollout_logprobs
        monkeypatch.setattr(rollout, "response_hidden", hidden)
