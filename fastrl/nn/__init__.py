"""Networks: MLP actor-critics and Q-networks for the classic trainers; a small GPT (language
model, value and reward heads, KV-cache sampling) for RLHF."""

from fastrl.nn.gpt import GPT, Generation, GPTConfig, ScalarGPT, generate
from fastrl.nn.mlp import ActorCritic, QNetwork, mlp

__all__ = ["ActorCritic", "QNetwork", "mlp", "GPT", "GPTConfig", "ScalarGPT", "Generation", "generate"]
