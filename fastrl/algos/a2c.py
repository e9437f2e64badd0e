"""Advantage Actor-Critic (Mnih et al. 2016, synchronous): short rollouts from many envs, GAE
advantages (``fastrl.ops.gae``; lambda 1 gives the classic n-step advantage), one gradient step
per rollout on ``-log pi * A + vf_coef * (V - R)^2 - ent_coef * H``. Defaults follow
Stable-Baselines3's A2C (RMSprop, 5-step rollouts)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastrl import ops
from fastrl.algos.common import TrainConfig, Trainer, check_positive, check_unit
from fastrl.algos.rollout import bootstrapped_next_values, collect_rollout
from fastrl.nn import ActorCritic
from fastrl.nn.normalize import ObsNormalizer


@dataclass
class A2CConfig(TrainConfig):
    num_envs: int = 16
    """environments stepped in parallel"""
    num_steps: int = 5
    """rollout length per environment (one gradient step per rollout)"""
    learning_rate: float = 7e-4
    """RMSprop step size"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 1.0
    """GAE lambda (1.0: n-step returns)"""
    normalize_advantages: bool = False
    """standardize advantages over the batch"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    max_grad_norm: float = 0.5
    """global gradient norm clip"""
    hidden: tuple[int, ...] = (64, 64)
    """hidden layer sizes"""
    normalize_obs: bool = False
    """normalize observations with running statistics"""
    init_log_std: float = 0.0
    """initial log standard deviation of a Gaussian policy"""


class A2C(Trainer):
    algo = "a2c"
    Config = A2CConfig

    def validate(self) -> None:
        cfg = self.config
        check_positive(cfg, "num_steps", "learning_rate", "max_grad_norm")
        check_positive(cfg, "vf_coef", "ent_coef", allow_zero=True)
        check_unit(cfg, "gamma", "gae_lambda")

    def setup(self) -> None:
        cfg = self.config
        self.agent = ActorCritic(self.obs_dim, self.action_dim, continuous=not self.discrete,
                                 hidden=tuple(cfg.hidden), init_log_std=cfg.init_log_std).to(self.device)
        self.obs_norm = ObsNormalizer(self.obs_dim).to(self.device) if cfg.normalize_obs else None
        self.optimizer = torch.optim.RMSprop(self.agent.parameters(), lr=cfg.learning_rate, alpha=0.99, eps=1e-5)

    def checkpointed(self):
        out = {"agent": self.agent, "optimizer": self.optimizer}
        if self.obs_norm is not None:
            out["obs_norm"] = self.obs_norm
        return out

    @torch.no_grad()
    def act(self, obs, deterministic: bool = True):
        return self.agent.act(self.features(obs), deterministic)

    def train_iteration(self):
        cfg = self.config
        b = collect_rollout(self, self.agent, cfg.num_steps)
        next_values = bootstrapped_next_values(self.agent, b)
        advantages, returns = ops.gae(b["rewards"], b["values"], next_values, b["terminated"], b["done"],
                                      cfg.gamma, cfg.gae_lambda)
        T, N = b["rewards"].shape
        obs = b["obs"].reshape(T * N, -1)
        dist = self.agent.dist(obs)
        logp = dist.log_prob(b["actions"].reshape(T * N, *b["actions"].shape[2:]))
        entropy = dist.entropy()
        if not self.discrete:
            logp, entropy = logp.sum(-1), entropy.sum(-1)
        adv = advantages.reshape(-1)
        if cfg.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = -(logp * adv).mean()
        v_loss = ops.value_loss(self.agent.value(obs), b["values"].reshape(-1), returns.reshape(-1))
        loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * entropy.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.agent.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        return {"policy_loss": pg_loss.detach(), "value_loss": v_loss.detach(), "entropy": entropy.detach().mean()}
