"""The settings GRPO and RLHF-PPO share: sampling, the policy's optimizer and loss, seeding and
sharding. Each trainer's config adds its own (and its own defaults, where they differ)."""

from __future__ import annotations

from dataclasses import dataclass

from fastrl.ops import IMPORTANCE_LEVELS, POLICY_LOSSES
from fastrl.utils.config import AT_LEAST_ONE, GRAD_CLIP, NON_NEGATIVE, POSITIVE, SEED, SelfChecking

__all__ = ["PolicyTrainingConfig"]


@dataclass
class PolicyTrainingConfig(SelfChecking):
    max_new_tokens: int = 16
    """Longest response sampled."""
    temperature: float = 1.0
    """Sampling temperature; the loss uses the same one so the ratios are exact."""
    learning_rate: float = 1e-4
    """Policy AdamW learning rate."""
    epochs: int = 1
    """Passes over each batch of responses."""
    num_minibatches: int = 2
    """Minibatches per epoch."""
    clip_low: float = 0.2
    """Lower ratio clip epsilon: ratios are clipped below at 1 - clip_low (and above at
    1 + clip_low unless the config has a clip_high)."""
    importance_level: str = "token"
    """Importance ratio: token, or sequence (GSPO: the geometric mean of the response's token
    ratios, clipped per response; pair it with tighter clips, e.g. 3e-4 and 4e-4 in the paper)."""
    policy_loss: str = "ppo"
    """Policy-gradient term: ppo (clipped surrogate) or cispo (MiniMax-M1: -sg(clip(ratio)) A logp,
    a gradient for every token)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (inf: no clipping)."""
    seed: int = 0
    """Seed of sampling and minibatch order, in [0, 2**63)."""
    fsdp: bool = False
    """Under torchrun, shard the transformers policy, its reference (and PPO's critic) with FSDP2
    (per block, then the root) instead of keeping a whole copy on every rank (docs/distributed.md)."""

    field_rules = {
        "max_new_tokens": AT_LEAST_ONE, "epochs": AT_LEAST_ONE, "num_minibatches": AT_LEAST_ONE,
        "temperature": POSITIVE, "learning_rate": POSITIVE, "clip_low": NON_NEGATIVE,
        "max_grad_norm": GRAD_CLIP, "seed": SEED, "importance_level": IMPORTANCE_LEVELS,
        "policy_loss": POLICY_LOSSES,
    }
    renamed = {"lr": "learning_rate", "clip": "clip_low", "minibatches": "num_minibatches"}
