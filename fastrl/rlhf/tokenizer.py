"""Tokenizers for RLHF: the protocol the trainers use, the demo's character-level tokenizer, and
an adapter for a ``transformers`` tokenizer from a local directory (optional extra ``rlhf``)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["Tokenizer", "CharTokenizer", "HFTokenizer", "check_vocab"]


@runtime_checkable
class Tokenizer(Protocol):
    """What the trainers need from a tokenizer."""

    vocab_size: int
    pad_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class CharTokenizer:
    """One id per character of ``alphabet``; id 0 is padding and id 1 end-of-sequence."""

    pad_id = 0
    eos_id = 1

    def __init__(self, alphabet: str):
        if len(set(alphabet)) != len(alphabet):
            raise ValueError(f"alphabet has repeated characters: {alphabet!r}")
        self.alphabet = alphabet
        self._ids = {c: i + 2 for i, c in enumerate(alphabet)}
        self.vocab_size = len(alphabet) + 2

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} in {text!r} is not in the alphabet") from None

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.alphabet[i - 2] for i in ids if i >= 2)


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


def check_vocab(tokenizer: Tokenizer, vocab_size: int, model_name: str = "model") -> None:
    """Raises unless every id the tokenizer produces has a row in the model's embedding."""
    if tokenizer.vocab_size > vocab_size:
        raise ValueError(
            f"tokenizer has {tokenizer.vocab_size} ids but the {model_name} embeds only "
            f"{vocab_size}: they do not belong together"
        )
