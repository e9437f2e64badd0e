"""Networks: MLP actor-critics and Q-networks for the classic trainers; convolutional ones (the
MinAtar paper's) for image observations; a small GPT (language model, value and reward heads,
KV-cache sampling) for RLHF."""

from fastrl.nn.conv import ConvActorCritic, ConvQNetwork, MinAtarTorso
from fastrl.nn.gpt import GPT, Generation, GPTConfig, ScalarGPT, generate
from fastrl.nn.mlp import ActorCritic, QNetwork, mlp

__all__ = ["ActorCritic", "QNetwork", "mlp", "ConvActorCritic", "ConvQNetwork", "MinAtarTorso", "GPT", "GPTConfig",
           "ScalarGPT", "Generation", "generate"]
