"""Reward model from preferences: Bradley-Terry on (prompt, chosen, rejected) pairs.

    P(chosen > rejected) = sigmoid(r_chosen - r_rejected)
    loss = -log sigmoid(r_chosen - r_rejected - margin)

The model is a GPT trunk with a scalar head read at the last real token (the EOS of the
response), or a ``transformers`` sequence classifier from a local directory
(:class:`HFRewardModel`). After training, the mean and std of its scores on the training
responses are stored as buffers, so they are saved with the weights and ``normalized`` gives
zero-mean, unit-std rewards for PPO/GRPO.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fastrl.nn.gpt import GPT, GPTConfig, ScalarGPT
from fastrl.nn.hf import HFScalar
from fastrl.rlhf.data import PairBatch, Preference, encode_pairs
from fastrl.rlhf.tokenizer import Tokenizer, check_vocab

__all__ = [
    "RewardModel",
    "HFRewardModel",
    "RewardModelConfig",
    "bradley_terry_loss",
    "preference_accuracy",
    "train_reward_model",
]


def bradley_terry_loss(r_chosen, r_rejected, margin=0.0) -> torch.Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected - margin)`` over pairs ``[B]``."""
    return -F.logsigmoid(r_chosen - r_rejected - margin).mean()


def preference_accuracy(r_chosen, r_rejected) -> torch.Tensor:
    """Fraction of pairs ``[B]`` where the chosen response scores strictly higher."""
    return (r_chosen > r_rejected).float().mean()


class RewardModel(nn.Module):
    """Scalar reward for whole sequences, with its normalization statistics.

    ``net`` scores sequences: a fresh :class:`ScalarGPT` of shape ``cfg`` unless given (any module
    with ``cfg.vocab_size``, ``cfg.block_size`` and ``score(ids, mask) -> [B]``)."""

    def __init__(self, cfg: GPTConfig | None = None, net: nn.Module | None = None):
        super().__init__()
        if (cfg is None) == (net is None):
            raise ValueError("pass exactly one of cfg (a fresh GPT reward model) and net")
        self.net = ScalarGPT(cfg) if net is None else net
        device = next(self.net.parameters()).device
        self.register_buffer("mean", torch.zeros((), device=device))
        self.register_buffer("std", torch.ones((), device=device))

    @classmethod
    def from_lm(cls, lm: GPT) -> RewardModel:
        """Starts from a (supervised fine-tuned) language model's trunk."""
        model = cls(lm.cfg).to(lm.trunk.tok.weight.device)
        model.net = ScalarGPT.from_lm(lm)
        return model

    @property
    def cfg(self) -> GPTConfig:
        return self.net.cfg

    def forward(self, ids, mask):
        """Raw score ``[B]`` of sequences ``ids [B, S]`` (any padding side)."""
        return self.net.score(ids, mask)

    def normalized(self, ids, mask):
        """``(score - mean) / std`` with the statistics of the training responses."""
        return (self(ids, mask) - self.mean) / self.std

    def save(self, path) -> None:
        torch.save({"config": asdict(self.cfg), "state_dict": self.state_dict()}, path)

    @classmethod
    def load(cls, path, map_location=None) -> RewardModel:
        saved = torch.load(path, map_location=map_location, weights_only=True)
        model = cls(GPTConfig(**saved["config"]))
        model.load_state_dict(saved["state_dict"])
        return model


class HFRewardModel(RewardModel):
    """A ``transformers`` decoder-only sequence classifier with ``num_labels == 1`` (GPT-2, Llama,
    ...; see :class:`fastrl.nn.hf.HFScalar`) as the reward model: an instance, or a local
    directory through ``from_pretrained`` (no download). The score is read at the last real token
    for either padding side, whatever the model's ``pad_token_id``. ``save_pretrained`` writes the
    model and the normalization statistics (``fastrl_reward_stats.json``) to one directory."""

    STATS_FILE = "fastrl_reward_stats.json"

    def __init__(self, model):
        super().__init__(net=HFScalar(model))

    @property
    def hf(self):
        """The wrapped ``transformers`` model."""
        return self.net.hf

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> HFRewardModel:
        """Loads the classifier (``AutoModelForSequenceClassification``, local files only;
        ``kwargs`` go to it) and the normalization statistics saved next to it, if any."""
        from transformers import AutoModelForSequenceClassification

        model = cls(AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True, **kwargs))
        stats = Path(path) / cls.STATS_FILE
        if stats.is_file():
            saved = json.loads(stats.read_text())
            model.mean.fill_(saved["mean"])
            model.std.fill_(saved["std"])
        return model

    def save_pretrained(self, path) -> None:
        self.hf.save_pretrained(path)
        stats = {"mean": self.mean.item(), "std": self.std.item()}
        (Path(path) / self.STATS_FILE).write_text(json.dumps(stats) + "\n")

    def save(self, path) -> None:
        """Same as ``save_pretrained``: ``path`` is a directory."""
        self.save_pretrained(path)

    @classmethod
    def load(cls, path, map_location=None) -> HFRewardModel:
        """Same as ``from_pretrained``, then moved to ``map_location`` if given."""
        model = cls.from_pretrained(path)
        return model if map_location is None else model.to(map_location)


@dataclass
class RewardModelConfig:
    epochs: int = 3
    """Passes over the training pairs."""
    batch_size: int = 64
    """Pairs per gradient step."""
    lr: float = 3e-4
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    eval_fraction: float = 0.1
    """Share of the pairs held out to measure accuracy."""
    seed: int = 0
    """Seed of the train/held-out split and of the batch order."""


def _scores(model: RewardModel, batch: PairBatch):
    return model(batch.chosen, batch.chosen_mask), model(batch.rejected, batch.rejected_mask)


@torch.no_grad()
def _evaluate(model: RewardModel, batch: PairBatch, batch_size: int):
    rc, rr = zip(*(_scores(model, batch.select(torch.arange(i, min(i + batch_size, len(batch)))))
                   for i in range(0, len(batch), batch_size)))  # fmt: skip
    return torch.cat(rc), torch.cat(rr)


def train_reward_model(
    model: RewardModel,
    pairs: list[Preference],
    tokenizer: Tokenizer,
    cfg: RewardModelConfig,
    progress=None,
) -> dict[str, float]:
    """Trains ``model`` in place on the pairs minus a held-out share; stores the normalization
    statistics. Returns ``loss`` (last epoch, train), ``train_accuracy``, ``eval_accuracy``,
    ``eval_pairs``, ``mean`` and ``std``. ``progress`` is called with 1 after each step."""
    check_vocab(tokenizer, model.cfg.vocab_size, "reward model")
    device = model.mean.device
    data = encode_pairs(pairs, tokenizer, model.cfg.block_size, device)
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(data), generator=g).to(device)
    n_eval = int(round(cfg.eval_fraction * len(data)))
    held_out, train = data.select(order[:n_eval]), data.select(order[n_eval:])
    if len(train) == 0:
        raise ValueError(f"no training pairs left after holding out {n_eval} of {len(data)}")

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    for _ in range(cfg.epochs):
        epoch_loss = torch.zeros((), device=device)
        perm = torch.randperm(len(train), generator=g).to(device)
        for i in range(0, len(train), cfg.batch_size):
            batch = train.select(perm[i : i + cfg.batch_size])
            loss = bradley_terry_loss(*_scores(model, batch), batch.margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            epoch_loss += loss.detach() * len(batch)
            if progress is not None:
                progress(1)
    model.eval()

    rc, rr = _evaluate(model, train, cfg.batch_size)
    both = torch.cat([rc, rr])
    model.mean.copy_(both.mean())
    model.std.copy_(both.std().clamp(min=1e-6))
    metrics = {
        "loss": (epoch_loss / len(train)).item(),
        "train_accuracy": preference_accuracy(rc, rr).item(),
        "eval_pairs": n_eval,
        "mean": model.mean.item(),
        "std": model.std.item(),
    }
    if n_eval:
        metrics["eval_accuracy"] = preference_accuracy(*_evaluate(model, held_out, cfg.batch_size)).item()
    return metrics
