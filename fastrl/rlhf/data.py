"""User data for RLHF: prompts (strings or token tensors) and preference records (JSONL), turned
into padded token tensors. Every error names the record at fault.

Preference JSONL, one record per line, either a pair
    {"prompt": "...", "chosen": "...", "rejected": "...", "margin": 0.0}      (margin optional)
or a ranking of K responses, best first, which gives the K(K-1)/2 pairs it implies
    {"prompt": "...", "ranking": ["best", "second", ..., "worst"]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from fastrl.rlhf.tokenizer import Tokenizer

__all__ = [
    "Preference",
    "PairBatch",
    "load_preferences",
    "ranking_to_pairs",
    "encode_prompts",
    "encode_pairs",
    "pad",
]


@dataclass
class Preference:
    """One comparison: ``chosen`` was preferred to ``rejected`` as a response to ``prompt``."""

    prompt: str
    chosen: str
    rejected: str
    margin: float = 0.0
    """How much better chosen is; the Bradley-Terry loss asks r_c - r_r to exceed it."""
    source: str = ""
    """Where the record came from (e.g. ``prefs.jsonl:12``), for error messages."""


@dataclass
class PairBatch:
    """Chosen and rejected sequences (prompt + response + EOS), right-padded."""

    chosen: torch.Tensor
    """[B, S] token ids."""
    chosen_mask: torch.Tensor
    """[B, S] bool, True for real tokens."""
    rejected: torch.Tensor
    """[B, S'] token ids."""
    rejected_mask: torch.Tensor
    """[B, S'] bool."""
    margin: torch.Tensor
    """[B] float."""

    def __len__(self) -> int:
        return self.chosen.shape[0]

    def select(self, index: torch.Tensor) -> PairBatch:
        return PairBatch(*(x[index] for x in (self.chosen, self.chosen_mask, self.rejected,
                                               self.rejected_mask, self.margin)))  # fmt: skip


def ranking_to_pairs(prompt: str, ranking: list[str], source: str = "") -> list[Preference]:
    """Every (better, worse) pair of a best-first ranking of K responses: K(K-1)/2 pairs."""
    return [
        Preference(prompt, ranking[i], ranking[j], source=source)
        for i in range(len(ranking))
        for j in range(i + 1, len(ranking))
    ]


def _text(record: dict, key: str, where: str) -> str:
    if key not in record:
        raise ValueError(f"{where}: missing field {key!r}")
    if not isinstance(record[key], str):
        raise ValueError(f"{where}: field {key!r} must be a string, got {type(record[key]).__name__}")
    return record[key]


def load_preferences(path: str | Path) -> list[Preference]:
    """Reads preference JSONL (see the module docstring); blank lines are skipped."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            prompt = _text(record, "prompt", where)
            if "ranking" in record:
                ranking = record["ranking"]
                if not isinstance(ranking, list) or len(ranking) < 2 or not all(isinstance(r, str) for r in ranking):
                    raise ValueError(f"{where}: 'ranking' must be a list of at least 2 strings")
                pairs += ranking_to_pairs(prompt, ranking, where)
            else:
                margin = record.get("margin", 0.0)
                if isinstance(margin, bool) or not isinstance(margin, (int, float)):
                    raise ValueError(f"{where}: 'margin' must be a number, got {margin!r}")
                pairs.append(Preference(prompt, _text(record, "chosen", where),
                                        _text(record, "rejected", where), float(margin), where))  # fmt: skip
    if not pairs:
        raise ValueError(f"{path}: no preference records")
    return pairs


def pad(seqs: list[list[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pads token lists to ``(ids [B, S], mask [B, S])``, padding on ``side``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, s in enumerate(seqs):
        cols = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, cols] = torch.as_tensor(s, dtype=torch.long)
        mask[i, cols] = True
    return ids, mask


def encode_prompts(prompts, tokenizer: Tokenizer | None = None, device=None):
    """Prompts as a list of strings (needs ``tokenizer``) or of 1-D token tensors, to left-padded
    ``(ids [B, P], mask [B, P])``. Raises on an empty list or an empty prompt."""
    if len(prompts) == 0:
        raise ValueError("no prompts given")
    seqs = []
    for i, p in enumerate(prompts):
        if isinstance(p, str):
            if tokenizer is None:
                raise ValueError("prompts are strings: pass a tokenizer to encode them")
            seq = tokenizer.encode(p)
        elif isinstance(p, torch.Tensor) and p.ndim == 1 and not p.is_floating_point():
            seq = p.tolist()
        else:
            raise TypeError(f"prompt {i}: expected a string or a 1-D integer tensor, got {type(p).__name__}")
        if not seq:
            raise ValueError(f"prompt {i} is empty")
        seqs.append(seq)
    pad_id = tokenizer.pad_id if tokenizer is not None else 0
    ids, mask = pad(seqs, pad_id, side="left")
    return ids.to(device), mask.to(device)


def encode_pairs(pairs: list[Preference], tokenizer: Tokenizer, block_size: int, device=None) -> PairBatch:
    """Tokenizes prompt + response + EOS for both sides of each pair; the reward model reads its
    score at the EOS. Raises, naming the record, on an empty prompt or a sequence longer than
    ``block_size``."""
    if not pairs:
        raise ValueError("no preference pairs given")
    sides = {"chosen": [], "rejected": []}
    for i, pair in enumerate(pairs):
        where = pair.source or f"pair {i}"
        prompt = tokenizer.encode(pair.prompt)
        if not prompt:
            raise ValueError(f"{where}: empty prompt")
        for side, seqs in sides.items():
            seq = prompt + tokenizer.encode(getattr(pair, side)) + [tokenizer.eos_id]
            if len(seq) > block_size:
                raise ValueError(
                    f"{where}: prompt + {side} response is {len(seq)} tokens (with EOS), longer "
                    f"than the model's context of {block_size}"
                )
            seqs.append(seq)
    chosen, chosen_mask = pad(sides["chosen"], tokenizer.pad_id)
    rejected, rejected_mask = pad(sides["rejected"], tokenizer.pad_id)
    margin = torch.tensor([p.margin for p in pairs])
    return PairBatch(*(x.to(device) for x in (chosen, chosen_mask, rejected, rejected_mask, margin)))
