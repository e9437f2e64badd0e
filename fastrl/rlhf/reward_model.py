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
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fastrl.nn.gpt import GPT, GPTConfig, ScalarGPT
from fastrl.nn.hf import HFScalar, is_transformers
from fastrl.rlhf.data import PairBatch, Preference, encode_pairs, preference_pairs
from fastrl.rlhf.tokenizer import Tokenizer, as_tokenizer, check_vocab
from fastrl.utils.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, SEED, Range, SelfChecking

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
        """Loads what :meth:`save` wrote. Only tensors and plain containers are unpickled
        (``weights_only=True``), so a crafted file cannot run code; a file that holds anything
        else, or is not such a checkpoint, raises a ValueError naming it."""
        try:
            saved = torch.load(path, map_location=map_location, weights_only=True)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise  # the OS error names the file
        except Exception as exc:
            raise ValueError(f"{path}: {_load_failure(exc)}") from None
        if not (isinstance(saved, dict) and isinstance(saved.get("config"), dict)
                and isinstance(saved.get("state_dict"), dict)):  # fmt: skip
            raise ValueError(f"{path}: not a reward model checkpoint (RewardModel.save writes a dict "
                             "with 'config' and 'state_dict')")
        try:
            model = cls(GPTConfig(**saved["config"]))
            model.load_state_dict(saved["state_dict"])
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{path}: not a valid reward model checkpoint: {_first_line(exc)}") from None
        _check_stats(model.mean.item(), model.std.item(), str(path))
        return model


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _load_failure(exc: Exception) -> str:
    """One line on why ``torch.load(weights_only=True)`` failed."""
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if unsafe:
        return (f"refused: the file holds a Python object ({unsafe.group(1)}) where a checkpoint holds "
                "only tensors and plain containers (loaded with weights_only=True: nothing in it ran)")
    # torch's message opens with advice to load with weights_only=False: keep only the reason
    reason = re.search(r"WeightsUnpickler error:(.*?)(Check the documentation|$)", str(exc), re.S)
    detail = " ".join(reason.group(1).split()) if reason else _first_line(exc)
    kind = type(exc).__name__
    why = kind if detail == kind else f"{kind}: {detail[:120]}"
    return f"not a checkpoint written by RewardModel.save ({why})"


def _check_stats(mean, std, where: str) -> None:
    """The normalization statistics must be usable: finite mean, finite std > 0."""
    for name, value in (("mean", mean), ("std", std)):
        try:
            finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        except OverflowError:  # an int too large for a float
            finite = False
        if not finite:
            raise ValueError(f"{where}: normalization statistic {name!r} must be a finite number, "
                             f"got {repr(value)[:40]}")
    if std <= 0:
        raise ValueError(f"{where}: normalization statistic 'std' must be > 0, got {std!r}")


def read_stats(path) -> tuple[float, float]:
    """``(mean, std)`` from a ``fastrl_reward_stats.json`` written by ``save_pretrained``; raises a
    ValueError naming the file and the field when it is not valid."""
    try:
        saved = json.loads(Path(path).read_bytes().decode("utf-8-sig"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not valid JSON ({_first_line(exc)})") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: expected a JSON object with 'mean' and 'std'")
    for name in ("mean", "std"):
        if name not in saved:
            raise ValueError(f"{path}: missing field {name!r}")
    _check_stats(saved["mean"], saved["std"], str(path))
    return float(saved["mean"]), float(saved["std"])


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


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
            mean, std = read_stats(stats)
            model.mean.fill_(mean)
            model.std.fill_(std)
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
class RewardModelConfig(SelfChecking):
    epochs: int = 3
    """Passes over the training pairs."""
    batch_size: int = 64
    """Pairs per gradient step."""
    learning_rate: float = 3e-4
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    eval_fraction: float = 0.1
    """Share of the pairs held out to measure accuracy, in [0, 1)."""
    seed: int = 0
    """Seed of the train/held-out split and of the batch order, in [0, 2**63)."""

    field_rules = {
        "epochs": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "learning_rate": POSITIVE, "weight_decay": NON_NEGATIVE,
        "eval_fraction": Range(0, 1, high_open=True), "seed": SEED,
    }
    renamed = {"lr": "learning_rate"}


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
    """Trains ``model`` in place on the pairs (a list of :class:`Preference` or of dicts, or a
    ``datasets.Dataset``: :func:`fastrl.rlhf.data.preference_pairs`) minus a held-out share;
    stores the normalization statistics. Returns ``loss`` (last epoch, train), ``train_accuracy``,
    ``eval_accuracy``, ``eval_pairs``, ``mean`` and ``std``. ``progress`` is called with 1 after
    each step."""
    RewardModelConfig.checked("cfg", cfg)
    if is_transformers(model, "PreTrainedModel"):  # not wrapped here: the wrapper keeps the statistics
        raise TypeError(f"model is a transformers {type(model).__name__}: wrap it as "
                        "fastrl.rlhf.HFRewardModel(model), which holds the normalization statistics training sets")
    if not isinstance(model, RewardModel):
        raise TypeError(f"model must be a RewardModel, got {type(model).__name__}")
    tokenizer = as_tokenizer(tokenizer)  # a transformers tokenizer wrapped
    check_vocab(tokenizer, model.cfg.vocab_size, "reward model")
    pairs = preference_pairs(pairs, tokenizer)
    device = model.mean.device
    data = encode_pairs(pairs, tokenizer, model.cfg.block_size, device)
    g = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(data), generator=g).to(device)
    n_eval = int(round(cfg.eval_fraction * len(data)))
    held_out, train = data.select(order[:n_eval]), data.select(order[n_eval:])
    if len(train) == 0:
        raise ValueError(f"no training pairs left after holding out {n_eval} of {len(data)}")

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
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
