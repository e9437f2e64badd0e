"""Small MLPs for classic control, initialised as in the PPO implementation details
(orthogonal weights, gain sqrt(2) for hidden layers, small gains for the output layers)."""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(sizes: list[int], activation: type[nn.Module] = nn.Tanh, out_gain: float = 1.0) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        linear = nn.Linear(a, b)
        nn.init.orthogonal_(linear.weight, out_gain if last else math.sqrt(2))
        nn.init.zeros_(linear.bias)
        layers.append(linear)
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Separate policy and value MLPs.

    Discrete actions: the policy outputs logits ``[N, n_actions]``.
    Continuous actions: the policy outputs the Gaussian mean ``[N, act_dim]`` and a
    state-independent log standard deviation is learned alongside.
    """

    def __init__(self, obs_dim: int, action_dim: int, continuous: bool, hidden: tuple[int, ...] = (64, 64),
                 activation: type[nn.Module] = nn.Tanh, init_log_std: float = 0.0):
        super().__init__()
        self.continuous = continuous
        self.actor = mlp([obs_dim, *hidden, action_dim], activation, out_gain=0.01)
        self.critic = mlp([obs_dim, *hidden, 1], activation, out_gain=1.0)
        self.log_std = nn.Parameter(torch.full((action_dim,), init_log_std)) if continuous else None

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def dist(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        # validate_args=False: the argument checks cost more than the tiny forward pass.
        out = self.actor(obs)
        if self.continuous:
            return torch.distributions.Normal(out, self.log_std.exp().expand_as(out), validate_args=False)
        return torch.distributions.Categorical(logits=out, validate_args=False)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        out = self.actor(obs)
        if self.continuous:
            return out if deterministic else out + self.log_std.exp() * torch.randn_like(out)
        if deterministic:
            return out.argmax(-1)
        return torch.distributions.Categorical(logits=out, validate_args=False).sample()


class QNetwork(nn.Module):
    """Maps an observation to a vector of Q-values, one per action (one forward for all)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (120, 84)):
        super().__init__()
        self.net = mlp([obs_dim, *hidden, n_actions], nn.ReLU, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)
