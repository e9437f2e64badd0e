"""Rewards for the RLHF trainers: a reward model, or Python functions of the text.

A reward function follows TRL's convention: ``f(prompts: list[str], completions: list[str]) ->
list[float]``, one number per completion (a verifiable-reward task is one such function). Several
are summed with weights. The trainers decode each sampled prompt and response with their
tokenizer (padding and EOS dropped) and call every function once per batch. The other columns of
the prompts' dataset (``fastrl.rlhf.data.prompt_source``) come as keyword arguments, a list with
one value per completion, to each function that takes them by name (or takes ``**kwargs``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from numbers import Real

import torch

from fastrl.nn.gpt import Generation
from fastrl.nn.hf import is_transformers
from fastrl.rlhf.reward_model import HFRewardModel, RewardModel
from fastrl.rlhf.tokenizer import Tokenizer, check_vocab

__all__ = ["RewardFunction", "RewardFunctions", "decode_generation", "make_scorer", "per_row"]

RewardFunction = Callable[[list[str], list[str]], Sequence[float]]


def _name(fn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _keywords(fn) -> set[str] | None:
    """The keyword arguments ``fn`` takes besides prompts and completions; None when it takes
    any (``**kwargs``, or a signature Python cannot inspect)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


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
        self._keywords = [_keywords(fn) for fn in functions]

    def __call__(self, prompts: list[str], completions: list[str], **columns: list) -> list[float]:
        """The weighted sum per completion; ``columns`` (one value per completion each) go to the
        functions that take them."""
        total = [0.0] * len(completions)
        for fn, weight, takes in zip(self.functions, self.weights, self._keywords):
            kwargs = {k: list(v) for k, v in columns.items() if takes is None or k in takes}
            values = fn(list(prompts), list(completions), **kwargs)
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


def per_row(columns: dict[str, list] | None, rows: int) -> dict[str, list]:
    """Columns with one value per prompt as one value per row of a generation of ``rows`` rows,
    each prompt's rows consecutive (a GRPO group)."""
    out = {}
    for k, column in (columns or {}).items():
        if not column or rows % len(column):
            raise ValueError(f"reward_kwargs[{k!r}] has {len(column)} values for {rows} responses; it needs one "
                             "per prompt")
        out[k] = [value for value in column for _ in range(rows // len(column))]
    return out


def make_scorer(reward, tokenizer: Tokenizer, weights=None) -> Callable[..., torch.Tensor]:
    """``score(gen, reward_kwargs=None) -> [B]`` float32 on the generation's device: a
    :class:`RewardModel`'s normalized score (a ``transformers`` sequence classifier is wrapped as
    :class:`fastrl.rlhf.reward_model.HFRewardModel`), or the weighted sum of reward functions (one
    callable or a list) on the decoded text, given ``reward_kwargs`` (columns with one value per
    prompt, see :func:`per_row`) as keyword arguments."""
    if is_transformers(reward, "PreTrainedModel"):
        try:
            reward = HFRewardModel(reward)
        except ValueError as exc:
            raise ValueError(f"reward_model: {exc}") from None
    if isinstance(reward, RewardModel):
        if weights is not None:
            raise ValueError("reward_weights apply to reward functions, not to a reward model")
        check_vocab(tokenizer, reward.cfg.vocab_size, "reward model")
        return lambda gen, reward_kwargs=None: reward.normalized(gen.ids, gen.mask)
    functions = RewardFunctions(reward, weights)

    def score(gen: Generation, reward_kwargs: dict[str, list] | None = None) -> torch.Tensor:
        values = functions(*decode_generation(gen, tokenizer), **per_row(reward_kwargs, gen.ids.shape[0]))
        return torch.tensor(values, dtype=torch.float32, device=gen.ids.device)

    return score
