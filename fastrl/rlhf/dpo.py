"""DPO: direct preference optimization (Rafailov et al. 2023), offline on preference pairs.

No reward model and no sampling: on the same (prompt, chosen, rejected) pairs as the reward model
(``fastrl.rlhf.data``, JSONL), the policy is trained so that

    loss = -log sigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r)))

with ``logp`` the log-prob of a whole response (its tokens and EOS, given the prompt) under the
policy and ``ref`` under a frozen reference (the policy before training, unless given). Both come
from the fused ``fastrl.ops.token_logprobs`` on the hidden states and the LM head, so the
full-vocabulary log-softmax is never built. ``beta * (logp - ref)`` is the implicit reward.

Under torchrun (docs/distributed.md) ``batch_size`` counts the whole job: every rank draws the
same order of the pairs and trains on its share of each batch (``[r·n/W, (r+1)·n/W)`` of its ``n``
pairs), its loss the sum over its pairs divided by ``n``, so that the averaged gradient is the
batch's whatever the split. Every rank computes the reference's log-probs of all the pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fastrl import distributed
from fastrl.nn.gpt import GPT
from fastrl.nn.hf import as_causal_lm
from fastrl.ops import token_logprobs
from fastrl.rlhf.data import PairBatch, Preference, encode_pairs, preference_pairs
from fastrl.rlhf.rollout import frozen_copy
from fastrl.rlhf.tokenizer import Tokenizer, as_tokenizer, check_vocab
from fastrl.utils.config import AT_LEAST_ONE, GRAD_CLIP, POSITIVE, SEED, SelfChecking

__all__ = ["DPOConfig", "DPOTrainer", "dpo_loss", "sequence_logprobs", "encode_dpo_pairs", "train_dpo"]


@dataclass
class DPOConfig(SelfChecking):
    beta: float = 0.1
    """beta: strength of the implicit KL to the reference (larger: stay closer to it)."""
    learning_rate: float = 1e-4
    """Policy AdamW learning rate."""
    epochs: int = 1
    """Passes over the pairs."""
    batch_size: int = 16
    """Pairs per gradient step."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (inf: no clipping)."""
    seed: int = 0
    """Seed of the batch order, in [0, 2**63)."""

    field_rules = {
        "beta": POSITIVE, "learning_rate": POSITIVE, "epochs": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE,
        "max_grad_norm": GRAD_CLIP, "seed": SEED,
    }  # fmt: skip
    renamed = {"lr": "learning_rate"}


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """``(loss, margins)``: the mean over pairs ``[B]`` of ``-log sigmoid(margin)``, with
    ``margin = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))`` (the
    implicit reward of the chosen response minus the rejected one's), and the margins ``[B]``."""
    margins = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(margins).mean(), margins.detach()


@dataclass
class DPOBatch:
    """Chosen rows then rejected rows, ``[2B, S]``, right-padded to one width."""

    ids: torch.Tensor
    mask: torch.Tensor
    response_mask: torch.Tensor
    """True on the response tokens and the EOS (what the log-prob of a response sums)."""

    def __len__(self) -> int:
        return self.ids.shape[0] // 2

    def select(self, index: torch.Tensor) -> DPOBatch:
        rows = torch.cat([index, index + len(self)])
        return DPOBatch(self.ids[rows], self.mask[rows], self.response_mask[rows])


def encode_dpo_pairs(pairs: list[Preference], tokenizer: Tokenizer, block_size: int, device=None) -> DPOBatch:
    """Tokenizes the pairs as the reward model does (``encode_pairs``: its checks, its errors) and
    marks each row's response. A pair whose chosen and rejected responses are the same raises a
    ValueError naming it: DPO can learn nothing from it (its gradient is 0)."""
    batch: PairBatch = encode_pairs(pairs, tokenizer, block_size)
    for i, pair in enumerate(pairs):
        if pair.chosen == pair.rejected:
            raise ValueError(f"{pair.source or f'pair {i}'}: chosen and rejected are identical "
                             f"({pair.chosen!r}); a DPO pair must tell two responses apart")
    width = max(batch.chosen.shape[1], batch.rejected.shape[1])
    widen = lambda x, value: F.pad(x, (0, width - x.shape[1]), value=value)  # noqa: E731
    ids = torch.cat([widen(batch.chosen, tokenizer.pad_id), widen(batch.rejected, tokenizer.pad_id)])
    mask = torch.cat([widen(batch.chosen_mask, False), widen(batch.rejected_mask, False)])
    prompt_len = torch.tensor([len(tokenizer.encode(p.prompt)) for p in pairs] * 2)
    response_mask = mask & (torch.arange(width)[None, :] >= prompt_len[:, None])
    return DPOBatch(ids.to(device), mask.to(device), response_mask.to(device))


def sequence_logprobs(model: GPT, ids, mask, response_mask) -> torch.Tensor:
    """``[B]``: the sum of ``log p(token | everything before it)`` over each row's response tokens
    (``response_mask``), from the hidden states and the LM head by ``fastrl.ops.token_logprobs``."""
    hidden = model.hidden(ids, mask)[:, :-1]  # column t predicts token t + 1
    logp, _ = token_logprobs(hidden, ids[:, 1:], weight=model.lm_head.weight,
                             bias=getattr(model.lm_head, "bias", None), mask=response_mask[:, 1:])  # fmt: skip
    return logp.sum(1)


def _logprobs(model, batch: DPOBatch) -> tuple[torch.Tensor, torch.Tensor]:
    logp = sequence_logprobs(model, batch.ids, batch.mask, batch.response_mask)
    return logp[: len(batch)], logp[len(batch) :]


class _Position:
    """Where a DPO run is in its data: the epoch's batch order and the next batch's index."""

    def __init__(self):
        self.order, self.batch = None, 0

    def state_dict(self) -> dict:
        return {"order": self.order, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.batch = state["order"], state["batch"]


class DPOTrainer:
    """DPO on ``policy`` (a :class:`GPT` or ``fastrl.nn.hf.HFCausalLM``), trained in place on the
    pairs against ``reference`` (default: a frozen copy of the policy now). Each :meth:`step` is one
    gradient step on the next batch; an epoch is ``steps_per_epoch`` of them, in an order drawn from
    ``cpu_generator`` at its start. The reference's log-probs are computed once, at the first step
    (after a checkpoint's reference is loaded, ``fastrl.rlhf.run``)."""

    def __init__(self, policy: GPT, pairs: list[Preference], tokenizer: Tokenizer, cfg: DPOConfig,
                 reference: GPT | None = None):  # fmt: skip
        DPOConfig.checked("cfg", cfg)
        policy, tokenizer = as_causal_lm(policy, "policy"), as_tokenizer(tokenizer)  # transformers objects wrapped
        reference = None if reference is None else as_causal_lm(reference, "reference")
        check_vocab(tokenizer, policy.cfg.vocab_size, "policy")
        pairs = preference_pairs(pairs, tokenizer)  # a list of Preference, of dicts, or a datasets.Dataset
        self.cfg, self.tokenizer, self.policy = cfg, tokenizer, policy
        self.device = policy.lm_head.weight.device
        self.data = encode_dpo_pairs(pairs, tokenizer, policy.cfg.block_size, self.device)
        self.reference = frozen_copy(policy) if reference is None else reference
        self.world = distributed.init(self.device)
        self.opt = torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate)
        # shared by the ranks: every rank draws the order of one process and takes its share
        self.cpu_generator = torch.Generator().manual_seed(cfg.seed)
        self.position = _Position()
        self._ref = None  # the reference's (chosen, rejected) log-probs of every pair

    takes_prompts = False  # fastrl.rlhf.run: its data are its pairs
    steps_per_epoch = property(lambda self: -(-len(self.data) // self.cfg.batch_size))

    def checkpointed(self) -> dict:
        """What a run's checkpoint holds besides the RNGs (``fastrl.rlhf.run``)."""
        return {"policy": self.policy, "optimizer": self.opt, "position": self.position}

    def step(self) -> dict[str, torch.Tensor]:
        """One gradient step on the next batch; returns its detached mean ``loss``, ``accuracy``
        (share of pairs with a positive margin) and ``margin``, and ``pairs`` (its size)."""
        cfg, data, pos = self.cfg, self.data, self.position
        if self._ref is None:
            with torch.no_grad():  # the reference's log-probs, once for all pairs
                ref = [_logprobs(self.reference, data.select(torch.arange(i, min(i + cfg.batch_size, len(data)),
                                                                          device=self.device)))
                       for i in range(0, len(data), cfg.batch_size)]  # fmt: skip
                self._ref = tuple(torch.cat(side) for side in zip(*ref))
        if pos.batch == 0:  # a new epoch
            pos.order = torch.randperm(len(data), generator=self.cpu_generator)
        batch = pos.order.split(cfg.batch_size)[pos.batch]  # the job's batch
        pos.batch = (pos.batch + 1) % self.steps_per_epoch
        world, n = self.world, len(batch)
        rows = batch[n * world.rank // world.size : n * (world.rank + 1) // world.size].to(self.device)
        self.opt.zero_grad(set_to_none=True)
        if len(rows):
            chosen, rejected = _logprobs(self.policy, data.select(rows))
            margins = cfg.beta * ((chosen - self._ref[0][rows]) - (rejected - self._ref[1][rows]))
            losses = -F.logsigmoid(margins)
            # this rank's part of the batch's mean loss; average_gradients divides the ranks' sum by W
            (losses.sum() / n * world.size).backward()
        else:  # a batch of fewer pairs than ranks: this rank's part of the gradient is 0
            margins = losses = torch.zeros(0, device=self.device)
            for p in self.policy.parameters():
                if p.requires_grad:
                    p.grad = torch.zeros_like(p)
        distributed.average_gradients(self.policy.parameters())
        torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
        self.opt.step()
        margins, losses = margins.detach(), losses.detach()
        # the batch's means: sums over every rank's pairs, divided by the batch's count
        (sums,) = distributed.global_sum(torch.stack([losses.sum(), (margins > 0).sum(), margins.sum()]).double())
        loss, accuracy, margin = (sums / n).float()
        return {"loss": loss, "accuracy": accuracy, "margin": margin, "pairs": torch.tensor(float(n))}


def train_dpo(policy: GPT, pairs: list[Preference], tokenizer: Tokenizer, cfg: DPOConfig,
              reference: GPT | None = None, progress=None) -> dict[str, float]:  # fmt: skip
    """Trains ``policy`` (a :class:`GPT` or ``fastrl.nn.hf.HFCausalLM``) in place on the pairs
    against ``reference`` (default: a frozen copy of the policy now) for ``cfg.epochs`` epochs
    (:class:`DPOTrainer`; ``fastrl.rlhf.run.train_run`` for a logged, checkpointed run). Returns
    the last epoch's mean ``loss``, ``accuracy`` (share of pairs with a positive margin) and
    ``margin`` (mean implicit-reward margin, ``beta`` times the log-ratio difference).
    ``progress`` is called with 1 after each step."""
    trainer = DPOTrainer(policy, pairs, tokenizer, cfg, reference)
    for _ in range(cfg.epochs):
        totals = torch.zeros(3, device=trainer.device)  # loss, accuracy, margin summed over pairs
        for _ in range(trainer.steps_per_epoch):
            m = trainer.step()
            totals += torch.stack([m["loss"], m["accuracy"], m["margin"]]).to(totals.device) * m["pairs"]
            if progress is not None:
                progress(1)
    loss, accuracy, margin = (totals / len(trainer.data)).tolist()
    return {"loss": loss, "accuracy": accuracy, "margin": margin}
