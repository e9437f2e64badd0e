"""Running statistics on the device: observation normalization and reward scaling for
continuous control (gymnasium's NormalizeObservation / NormalizeReward, without host syncs)."""

from __future__ import annotations

import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Mean and variance of everything passed to :meth:`update` (Chan et al.'s parallel merge).
    Kept as buffers, so they travel with ``state_dict`` into checkpoints."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """x: ``[batch, *shape]``."""
        x = x.to(torch.float64)
        batch_mean, batch_var, n = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.var.copy_((self.var * self.count + batch_var * n + delta**2 * self.count * n / total) / total)
        self.count.copy_(total)


class ObsNormalizer(nn.Module):
    """``clip((obs - mean) / sqrt(var + eps))``; statistics update only while training."""

    def __init__(self, obs_dim: int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.stats = RunningMeanStd((obs_dim,))
        self.clip, self.eps = clip, eps

    def forward(self, obs: torch.Tensor, update: bool = False) -> torch.Tensor:
        if update:
            self.stats.update(obs)
        mean, std = self.stats.mean.to(obs.dtype), (self.stats.var + self.eps).sqrt().to(obs.dtype)
        return ((obs - mean) / std).clamp(-self.clip, self.clip)


class RewardScaler(nn.Module):
    """Divides rewards by the running std of each env's discounted return (as gymnasium's
    NormalizeReward); the return restarts where an episode ends."""

    def __init__(self, num_envs: int, gamma: float, eps: float = 1e-8):
        super().__init__()
        self.stats = RunningMeanStd(())
        self.register_buffer("discounted", torch.zeros(num_envs, dtype=torch.float64))
        self.gamma, self.eps = gamma, eps

    @torch.no_grad()
    def forward(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        self.discounted.mul_(self.gamma).add_(reward)
        self.stats.update(self.discounted)
        self.discounted.masked_fill_(done, 0.0)
        return reward / (self.stats.var + self.eps).sqrt().to(reward.dtype)
