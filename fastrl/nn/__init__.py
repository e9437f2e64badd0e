"""Neural networks: a small GPT (language model, value and reward heads, KV-cache sampling)."""

from fastrl.nn.gpt import GPT, Generation, GPTConfig, ScalarGPT, generate

__all__ = ["GPT", "GPTConfig", "ScalarGPT", "Generation", "generate"]
