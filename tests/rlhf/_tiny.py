"""A tiny policy and reward model for trainer smoke tests."""

import torch

from fastrl.nn.gpt import GPT, GPTConfig
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
