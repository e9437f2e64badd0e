"""Tokenizers for RLHF: the protocol the trainers use, the demo's character-level tokenizer, and
an adapter for a ``transformers`` tokenizer from a local directory (optional extra ``rlhf``)."""

from __future__ import annotations

from numbers import Integral
from typing import Protocol, runtime_checkable

import torch

from fastrl.nn.hf import is_transformers

__all__ = ["Tokenizer", "CharTokenizer", "HFTokenizer", "as_tokenizer", "check_vocab"]


@runtime_checkable
class Tokenizer(Protocol):
    """What the trainers need from a tokenizer."""

    vocab_size: int
    pad_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class CharTokenizer:
    """One id per character of ``alphabet``; id 0 is padding and id 1 end-of-sequence.
    ``encode`` raises ValueError on a character outside the alphabet, ``decode`` on an id outside
    ``[0, vocab_size)`` (it drops the padding and EOS ids, replaces nothing)."""

    pad_id = 0
    eos_id = 1

    def __init__(self, alphabet: str):
        if not isinstance(alphabet, str) or not alphabet:
            raise ValueError(f"alphabet must be a non-empty string, got {alphabet!r}")
        if len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet has repeated characters: {alphabet!r}")
        self.alphabet = alphabet
        self._ids = {c: i + 2 for i, c in enumerate(alphabet)}
        self.vocab_size = len(alphabet) + 2

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        try:
            return [self._ids[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} in {text!r} is not in the alphabet") from None

    def decode(self, ids) -> str:
        """Text of a sequence of ids (a list or 1-D integer tensor); padding and EOS ids are
        dropped. An id outside ``[0, vocab_size)`` raises ValueError naming it."""
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1 or ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise TypeError(f"ids must be a 1-D integer tensor, got a {ids.ndim}-D {ids.dtype} tensor")
            ids = ids.tolist()
        chars = []
        for pos, i in enumerate(ids):
            if isinstance(i, bool) or not isinstance(i, Integral):
                raise TypeError(f"ids[{pos}] must be an int, got {type(i).__name__} {i!r}")
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"ids[{pos}] = {i} is not a token id of this tokenizer (ids are 0 to "
                                 f"{self.vocab_size - 1})")
            if i >= 2:
                chars.append(self.alphabet[i - 2])
        return "".join(chars)


class HFTokenizer:
    """A ``transformers`` tokenizer (an instance, or a local directory for ``AutoTokenizer``)
    behind the protocol. Without a pad token, EOS pads (the masks tell them apart)."""

    def __init__(self, path_or_tokenizer):
        if isinstance(path_or_tokenizer, str):
            from transformers import AutoTokenizer

            path_or_tokenizer = AutoTokenizer.from_pretrained(path_or_tokenizer, local_files_only=True)
        self.hf = path_or_tokenizer
        if self.hf.eos_token_id is None:
            raise ValueError("the transformers tokenizer has no EOS token")
        self.eos_id = self.hf.eos_token_id
        self.pad_id = self.eos_id if self.hf.pad_token_id is None else self.hf.pad_token_id
        self.vocab_size = len(self.hf)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return self.hf.decode(ids, skip_special_tokens=True)

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.hf, "chat_template", None))

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The text of a conversation (``{"role", "content"}`` messages) through the tokenizer's
        chat template, ending with the assistant's turn opened when ``add_generation_prompt``."""
        if not self.has_chat_template:
            raise ValueError("the transformers tokenizer has no chat template (set tokenizer.chat_template "
                             "to a Jinja string, or pass the prompts as text)")
        return self.hf.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)


def as_tokenizer(tokenizer, name: str = "tokenizer") -> Tokenizer:
    """``tokenizer`` itself if it has the :class:`Tokenizer` protocol; a ``transformers`` tokenizer
    wrapped in :class:`HFTokenizer`; anything else a TypeError naming the argument."""
    if is_transformers(tokenizer, "PreTrainedTokenizerBase"):
        return HFTokenizer(tokenizer)
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(f"{name} must be a transformers tokenizer or have the fastrl.rlhf.Tokenizer protocol "
                        f"(vocab_size, pad_id, eos_id, encode, decode), got {type(tokenizer).__name__}")
    return tokenizer


def check_vocab(tokenizer: Tokenizer, vocab_size: int, model_name: str = "model") -> None:
    """Raises unless every id the tokenizer produces has a row in the model's embedding."""
    if tokenizer.vocab_size > vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer.vocab_size} ids but the {model_name} embeds only "
            f"{vocab_size}: they do not belong together"
        )
