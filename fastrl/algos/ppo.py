"""Proximal Policy Optimization (Schulman et al. 2017), discrete and continuous actions.

Follows CleanRL's ppo.py / ppo_continuous_action.py: a rollout of ``num_steps`` from every env,
advantages by GAE (``fastrl.ops.gae``: a truncated episode bootstraps from the value of its final
observation, a terminated one does not), then ``epochs`` passes of minibatch updates with
the clipped surrogate (``fastrl.ops.ppo_loss`` for categorical policies, fused over the logits),
a clipped value loss and an entropy bonus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fastrl import distributed, ops
from fastrl.algos.onpolicy import GlobalRewardScaler, OnPolicyConfig, OnPolicyTrainer
from fastrl.utils.config import NON_NEGATIVE, POSITIVE, UNIT, ConfigError, Rule


@dataclass
class PPOConfig(OnPolicyConfig):
    num_envs: int = 16
    """environments stepped in parallel"""
    num_steps: int = 64
    """rollout length per environment; a batch is num_envs * num_steps transitions"""
    learning_rate: float = 2.5e-3
    """Adam step size (annealed linearly to 0 when anneal_lr)"""
    anneal_lr: bool = True
    """decay the learning rate linearly over training"""
    gae_lambda: float = 0.95
    """GAE lambda"""
    num_minibatches: int = 4
    """minibatches per epoch"""
    epochs: int = 4
    """passes over each batch"""
    normalize_advantages: bool = True
    """standardize advantages within each minibatch"""
    clip_low: float = 0.2
    """surrogate clipping range epsilon: ratios are clipped to [1 - clip_low, 1 + clip_low]"""
    clip_value_loss: bool = True
    """clip the value loss around the old values (by clip_low)"""
    normalize_reward: bool = False
    """scale rewards by the running std of the discounted return"""

    field_rules: ClassVar[dict[str, Rule]] = {
        "num_steps": POSITIVE, "learning_rate": POSITIVE, "gae_lambda": UNIT, "num_minibatches": POSITIVE,
        "epochs": POSITIVE, "clip_low": NON_NEGATIVE,
    }
    renamed: ClassVar[dict[str, str]] = {"update_epochs": "epochs", "norm_adv": "normalize_advantages",
                                         "clip_coef": "clip_low", "clip_vloss": "clip_value_loss"}

    def check(self) -> None:
        super().check()
        batch = self.num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ConfigError(f"num_envs * num_steps ({batch}) must be divisible by num_minibatches "
                              f"({self.num_minibatches})", "num_minibatches")
        if self.normalize_advantages and batch // self.num_minibatches < 2:
            raise ConfigError(f"normalize_advantages needs minibatches of at least 2 samples; num_envs * "
                              f"num_steps / num_minibatches is {batch // self.num_minibatches}",
                              "normalize_advantages")


class PPO(OnPolicyTrainer):
    algo = "ppo"
    Config = PPOConfig
    may_be_nan = frozenset({"explained_variance"})  # 0/0 when the returns of a batch are all equal
    per_rank_modules = frozenset({"reward_scaler"})  # the running returns of this rank's envs

    def setup(self) -> None:
        cfg = self.config
        self.build_agent()
        self.reward_scaler = (GlobalRewardScaler(self.env.num_envs, cfg.gamma).to(self.device)
                              if cfg.normalize_reward else None)
        # fused: one kernel updates every parameter (3x faster than the per-tensor loop for small nets)
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=cfg.learning_rate, eps=1e-5, fused=True)
        self.num_iterations = -(-cfg.total_steps // (cfg.num_envs * cfg.num_steps))

    def checkpointed(self):
        out = super().checkpointed()
        if self.reward_scaler is not None:
            out["reward_scaler"] = self.reward_scaler
        return out

    def train_iteration(self) -> dict[str, torch.Tensor]:
        cfg = self.config
        if cfg.anneal_lr:
            frac = 1.0 - self.iteration / self.num_iterations
            self.optimizer.param_groups[0]["lr"] = frac * cfg.learning_rate
        batch = self._rollout()
        advantages, returns = self._advantages(batch)
        return self._update(batch, advantages, returns)

    # -- phase 1: rollout, phase 2: advantages ---------------------------------------------
    def _rollout(self) -> dict[str, torch.Tensor]:
        return self.collect_rollout(self.reward_scaler)

    def _advantages(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        next_values = self.bootstrapped_next_values(b)
        return ops.gae(b["rewards"], b["values"], next_values, b["terminated"], b["done"],
                       self.config.gamma, self.config.gae_lambda)

    # -- phase 3: update ----------------------------------------------------------------------
    def _minibatches(self) -> list[tuple[torch.Tensor, torch.Tensor | None, float]]:
        """One epoch's minibatches of the whole job's batch (``num_envs * num_steps`` samples, a
        random permutation split in ``num_minibatches``), as this rank's rows of each: (indices into
        its ``[T * n]`` samples, a mask (None: all valid), its share of the minibatch times W).

        The permutation is drawn alike on every rank (their RNGs are in step), so the ranks' rows
        of a minibatch are exactly the single-process minibatch: a rank's loss, a mean over its
        rows, is scaled by its share so that the averaged gradient is the minibatch's."""
        cfg = self.config
        total = cfg.num_envs * cfg.num_steps
        mb = total // cfg.num_minibatches
        perm = torch.randperm(total, device=self.device)  # flat index t * num_envs + global env
        if not self.world.distributed:
            return [(idx, None, 1.0) for idx in perm.split(mb)]
        first, n = self.env_shard.start, len(self.env_shard)
        step, env = perm // cfg.num_envs, perm % cfg.num_envs
        mine = (env >= first) & (env < first + n)
        local = step * n + (env - first)
        counts = mine.view(cfg.num_minibatches, mb).sum(1).tolist()  # one host sync per epoch
        out = []
        for idx in local[mine].split(counts):
            if idx.numel():
                out.append((idx, None, idx.numel() * self.world.size / mb))
            else:  # none of this minibatch is here: one masked row, weight 0 (the rank still joins)
                row = torch.zeros(1, dtype=torch.long, device=self.device)  # its first sample, masked
                out.append((row, torch.zeros(1, dtype=torch.bool, device=self.device), 0.0))
        return out

    def _update(self, b, advantages, returns) -> dict[str, torch.Tensor]:
        cfg = self.config
        n = b["rewards"].numel()  # this rank's samples: num_steps * its envs
        obs = b["obs"].flatten(0, 1)  # [n, obs_dim], or [n, H, W, C] images
        actions = b["actions"].reshape(n, *b["actions"].shape[2:])
        old_logp, old_values = b["logprobs"].reshape(n), b["values"].reshape(n)
        advantages, returns = advantages.reshape(n), returns.reshape(n)
        for _ in range(cfg.epochs):
            for idx, mask, share in self._minibatches():
                adv = advantages[idx]
                if cfg.normalize_advantages:
                    adv = distributed.whiten(adv, mask)  # over the whole minibatch, every rank's rows
                out = self.agent.actor(obs[idx])
                options = dict(clip_low=cfg.clip_low, entropy_coef=cfg.entropy_coef)
                if self.discrete:
                    pg_loss, stats = ops.ppo_loss(out, actions[idx], old_logp[idx], adv, **options)
                else:
                    pg_loss, stats = ops.gaussian_ppo_loss(out, self.agent.log_std, actions[idx], old_logp[idx],
                                                           adv, **options)
                v_loss = ops.value_loss(self.agent.value(obs[idx]), old_values[idx], returns[idx],
                                        clip=cfg.clip_low if cfg.clip_value_loss else None)
                loss = (pg_loss + cfg.vf_coef * v_loss) * share
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                distributed.average_gradients(self.agent.parameters())
                nn.utils.clip_grad_norm_(self.agent.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
        # The batch's variances (population ones: their ratio is the same) over every rank's samples.
        var_y = distributed.global_moments(returns)[1]
        explained_var = 1 - distributed.global_moments(returns - old_values)[1] / var_y
        # The last minibatch's values, each rank's scaled by its share (their mean over ranks is global).
        return {
            "policy_loss": pg_loss.detach() * share,
            "value_loss": v_loss.detach() * share,
            "entropy": stats["entropy"] * share,
            "approx_kl": stats["approx_kl"] * share,
            "clip_fraction": stats["clip_fraction"] * share,
            "explained_variance": explained_var,
            "learning_rate": torch.tensor(self.optimizer.param_groups[0]["lr"]),
        }
