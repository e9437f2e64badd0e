"""REINFORCE (Williams 1992): the policy gradient ``-log pi(a_t|s_t) * G_t`` with the reward-to-go
``G_t`` from ``fastrl.ops.discounted_returns``, and an optional learned baseline.

Without a baseline the returns are Monte-Carlo: steps of an episode that has not ended by the
end of the rollout have no return yet and are left out of the loss. With a baseline, those
returns bootstrap from V (the last observation's, or a truncated episode's final observation's)
and the advantage is ``G_t - V(s_t)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from fastrl import ops
from fastrl.algos.config import POSITIVE, Rule
from fastrl.algos.onpolicy import OnPolicyConfig, OnPolicyTrainer, collect_rollout


@dataclass
class ReinforceConfig(OnPolicyConfig):
    num_envs: int = 16
    """environments stepped in parallel"""
    num_steps: int = 128
    """rollout length per environment (one gradient step per rollout)"""
    learning_rate: float = 3e-3
    """Adam step size"""
    baseline: bool = True
    """learn a value baseline (and bootstrap unfinished episodes from it)"""
    normalize_advantages: bool = True
    """standardize G - b over the batch"""

    field_rules: ClassVar[dict[str, Rule]] = {"num_steps": POSITIVE, "learning_rate": POSITIVE}


class Reinforce(OnPolicyTrainer):
    algo = "reinforce"
    Config = ReinforceConfig

    def setup(self) -> None:
        self.build_agent()
        # fused: one kernel updates every parameter (3x faster than the per-tensor loop for small nets)
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=self.config.learning_rate, fused=True)

    def train_iteration(self):
        cfg = self.config
        b = collect_rollout(self, self.agent, cfg.num_steps)
        returns, valid = self._returns(b)
        T, N = b["rewards"].shape
        logp, entropy = self.log_probs(b["obs"].reshape(T * N, -1), b["actions"].reshape(T * N, *b["actions"].shape[2:]))
        values = self.agent.value(b["obs"].reshape(T * N, -1))
        returns, valid = returns.reshape(-1), valid.reshape(-1)
        adv = returns - values.detach() if cfg.baseline else returns
        if cfg.normalize_advantages:
            adv = (adv - _masked_mean(adv, valid)) / (_masked_std(adv, valid) + 1e-8)
        pg_loss = -_masked_mean(logp * adv, valid)
        loss = pg_loss - cfg.ent_coef * _masked_mean(entropy, valid)
        v_loss = _masked_mean(0.5 * (values - returns) ** 2, valid)
        if cfg.baseline:
            loss = loss + cfg.vf_coef * v_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.agent.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        return {"policy_loss": pg_loss.detach(), "value_loss": v_loss.detach(),
                "entropy": entropy.detach().mean(), "valid_fraction": valid.float().mean()}

    @torch.no_grad()
    def _returns(self, b) -> tuple[torch.Tensor, torch.Tensor]:
        """Reward-to-go ``[T, N]`` and which steps have one."""
        cfg = self.config
        if not cfg.baseline:
            # Monte-Carlo: a step counts once its episode has ended within this rollout.
            ended_later = b["done"].flip(0).cummax(0).values.flip(0)
            return ops.discounted_returns(b["rewards"], b["done"], cfg.gamma), ended_later
        T, N = b["rewards"].shape
        final_values = self.agent.value(b["final_obs"].reshape(T * N, -1)).reshape(T, N)
        truncated = b["done"] & ~b["terminated"]
        rewards = b["rewards"] + cfg.gamma * torch.where(truncated, final_values, 0.0)
        returns = ops.discounted_returns(rewards, b["done"], cfg.gamma, bootstrap=b["last_value"])
        return returns, torch.ones_like(b["done"])


def _masked_mean(x, mask):
    return (x * mask).sum() / mask.sum().clamp(min=1)


def _masked_std(x, mask):
    mean = _masked_mean(x, mask)
    return _masked_mean((x - mean) ** 2, mask).sqrt()
