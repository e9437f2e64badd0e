"""Rewards for the RLHF trainers: a reward model, or Python functions of the text.

A reward function follows TRL's convention: ``f(prompts: list[str], completions: list[str]) ->
list[float]``, one number per completion (a verifiable-reward task is one such function). Several
are summed with weights. The trainers decode each sampled prompt and response with their
tokenizer (padding and EOS dropped) and call every function once per batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Real

import torch

from fastrl.nn.gpt import Generation
from fastrl.rlhf.reward_model import RewardModel
from fastrl.rlhf.tokenizer import Tokenizer, check_vocab

__all__ = ["RewardFunction", "RewardFunctions", "decode_generation", "make_scorer"]

RewardFunction = Callable[[list[str], list[str]], Sequence[float]]


def _name(fn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


class RewardFunctions:
    """``sum_k weights[k] * functions[k](prompts, completions)`` per completion. ``functions``: one
    callable or a list of them; ``weights``: one finite number per function (default: all 1).
    Every value a function returns is checked: the right count, real and finite, else an error
    naming the function (and, for a bad value, the prompt it was for)."""

    def __init__(self, functions, weights: Sequence[float] | None = None):
        functions = list(functions) if isinstance(functions, (list, tuple)) else [functions]
        if not functions:
            raise ValueError("reward functions: the list is empty")
        for i, fn in enumerate(functions):
            if not callable(fn):
                raise TypeError(f"reward function {i} must be a callable (prompts, completions) -> "
                                f"list[float], got {type(fn).__name__}")
        weights = [1.0] * len(functions) if weights is None else list(weights)
        if len(weights) != len(functions):
            raise ValueError(f"reward_weights has {len(weights)} weights for {len(functions)} reward functions")
        for i, w in enumerate(weights):
            if isinstance(w, bool) or not isinstance(w, Real) or not math.isfinite(w):
                raise ValueError(f"reward_weights[{i}] must be a finite number, got {w!r}")
        self.functions, self.weights = functions, [float(w) for w in weights]

    def __call__(self, prompts: list[str], completions: list[str]) -> list[float]:
        total = [0.0] * len(completions)
        for fn, weight in zip(self.functions, self.weights):
            values = fn(list(prompts), list(completions))
            count = len(values) if hasattr(values, "__len__") else None
            if count != len(completions):
                got = f"{count} values" if count is not None else f"a {type(values).__name__}"
                raise ValueError(f"reward function {_name(fn)!r} returned {got} for {len(completions)} "
                                 f"completions (first prompt {prompts[0]!r}); it must return one float each")
            for i, value in enumerate(values):
                value = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
                if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
                    raise ValueError(f"reward function {_name(fn)!r} returned {value!r} for completion {i} "
                                     f"{completions[i]!r} of prompt {prompts[i]!r}: rewards must be finite numbers")
                total[i] += weight * float(value)
        return total


def decode_generation(gen: Generation, tokenizer: Tokenizer) -> tuple[list[str], list[str]]:
    """The text of each row's prompt and response (padding and EOS dropped by the tokenizer)."""
    prompts, completions = [], []
    for ids, mask in zip(gen.ids.tolist(), gen.mask.tolist()):
        tokens = [t for t, m in zip(ids, mask) if m]
        n_prompt = sum(mask[: gen.prompt_len])
        prompts.append(tokenizer.decode(tokens[:n_prompt]))
        completions.append(tokenizer.decode(tokens[n_prompt:]))
    return prompts, completions


def make_scorer(reward, tokenizer: Tokenizer, weights=None) -> Callable[[Generation], torch.Tensor]:
    """``score(gen) -> [B]`` float32 on the generation's device: a :class:`RewardModel`'s
    normalized score, or the weighted sum of reward functions (one callable or a list) on the
    decoded text."""
    if isinstance(reward, RewardModel):
        if weights is not None:
            raise ValueError("reward_weights apply to reward functions, not to a reward model")
        check_vocab(tokenizer, reward.cfg.vocab_size, "reward model")
        return lambda gen: reward.normalized(gen.ids, gen.mask)
    functions = RewardFunctions(reward, weights)

    def score(gen: Generation) -> torch.Tensor:
        values = functions(*decode_generation(gen, tokenizer))
        return torch.tensor(values, dtype=torch.float32, device=gen.ids.device)

    return score
