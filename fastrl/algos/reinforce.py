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

from fastrl import distributed, ops
from fastrl.algos.common import bootstrapped_returns
from fastrl.algos.onpolicy import OnPolicyConfig, OnPolicyTrainer
from fastrl.utils.config import POSITIVE, Rule


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
        b = self.collect_rollout()
        returns, valid = self._returns(b)
        obs, logp, entropy = self.flat_log_probs(b)
        values = self.agent.value(obs)
        returns, valid = returns.reshape(-1), valid.reshape(-1)
        adv = returns - values.detach() if cfg.baseline else returns
        if cfg.normalize_advantages:
            adv = distributed.whiten(adv, valid)  # over the whole job's batch
        # Means over the valid steps of the whole job: ranks hold different numbers of them, so each
        # divides its sum by the global count (times W, which the gradient average divides again).
        (count,) = distributed.global_sum(valid.sum())
        count = count.clamp(min=1)
        mean = lambda x: torch.where(valid, x, 0).sum() / count * self.world.size  # noqa: E731
        pg_loss = -mean(logp * adv)
        loss = pg_loss - cfg.entropy_coef * mean(entropy)
        v_loss = mean(0.5 * (values - returns) ** 2)
        if cfg.baseline:
            loss = loss + cfg.vf_coef * v_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.agent.parameters())
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
        returns = bootstrapped_returns(b["rewards"], self.bootstrapped_next_values(b), b["terminated"], b["done"],
                                       cfg.gamma)
        return returns, torch.ones_like(b["done"])
