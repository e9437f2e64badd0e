"""Advantage Actor-Critic (Mnih et al. 2016, synchronous): short rollouts from many envs, GAE
advantages (``fastrl.ops.gae``; lambda 1 gives the classic n-step advantage), one gradient step
per rollout on ``-log pi * A + vf_coef * (V - R)^2 - entropy_coef * H``. Defaults follow
Stable-Baselines3's A2C (RMSprop, 5-step rollouts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fastrl import distributed, ops
from fastrl.algos.onpolicy import OnPolicyConfig, OnPolicyTrainer, check_normalizable
from fastrl.utils.config import POSITIVE, UNIT, Rule


@dataclass
class A2CConfig(OnPolicyConfig):
    num_envs: int = 16
    """environments stepped in parallel"""
    num_steps: int = 5
    """rollout length per environment (one gradient step per rollout)"""
    learning_rate: float = 7e-4
    """RMSprop step size"""
    gae_lambda: float = 1.0
    """GAE lambda (1.0: n-step returns)"""
    normalize_advantages: bool = False
    """standardize advantages over the batch"""

    field_rules: ClassVar[dict[str, Rule]] = {
        "num_steps": POSITIVE, "learning_rate": POSITIVE, "gae_lambda": UNIT,
    }

    def check(self) -> None:
        super().check()
        check_normalizable(self, "normalize_advantages")


class A2C(OnPolicyTrainer):
    algo = "a2c"
    Config = A2CConfig

    def setup(self) -> None:
        self.build_agent()
        self.optimizer = torch.optim.RMSprop(self.agent.parameters(), lr=self.config.learning_rate,
                                             alpha=0.99, eps=1e-5)

    def train_iteration(self):
        cfg = self.config
        b = self.collect_rollout()
        next_values = self.bootstrapped_next_values(b)
        advantages, returns = ops.gae(b["rewards"], b["values"], next_values, b["terminated"], b["done"],
                                      cfg.gamma, cfg.gae_lambda)
        obs, logp, entropy = self.flat_log_probs(b)
        adv = advantages.reshape(-1)
        if cfg.normalize_advantages:
            adv = distributed.whiten(adv)  # over the whole job's batch
        pg_loss = -(logp * adv).mean()
        v_loss = ops.value_loss(self.agent.value(obs), b["values"].reshape(-1), returns.reshape(-1))
        loss = pg_loss + cfg.vf_coef * v_loss - cfg.entropy_coef * entropy.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.agent.parameters())  # ranks hold equal shares of the batch
        nn.utils.clip_grad_norm_(self.agent.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        return {"policy_loss": pg_loss.detach(), "value_loss": v_loss.detach(), "entropy": entropy.detach().mean()}
