"""Convolutional networks for image observations such as MinAtar's bool ``[10, 10, C]`` grids:
the MinAtar paper's (Young & Tian 2019): one 3x3 convolution with 16 channels (stride 1, no
padding), ReLU, a 128-unit layer, ReLU, then the head. Initialised like fastrl.nn.mlp (orthogonal
weights, gain sqrt(2) for hidden layers, small gains for the output layers).

The networks take observations as the env gives them, ``[..., H, W, C]`` (bool or float: bools
are converted on the network's device, so buffers can keep the 8x smaller bools), or flattened to
``[..., H * W * C]`` as the trainers' ``features()`` passes them today.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fastrl.nn.linear import Linear


def _orthogonal(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _checked_shape(obs_shape) -> tuple[int, int, int]:
    shape = tuple(int(d) for d in obs_shape)
    if len(shape) != 3 or min(shape) < 1 or shape[0] < 3 or shape[1] < 3:
        raise ValueError(f"obs_shape must be (H, W, C) with H, W >= 3 and C >= 1, got {tuple(obs_shape)}")
    return shape


class MinAtarTorso(nn.Module):
    """Image ``[..., H, W, C]`` (or flattened) -> features ``[..., hidden]``: Conv2d(C, channels,
    3) and ReLU, then Linear(channels * (H - 2) * (W - 2), hidden) and ReLU."""

    def __init__(self, obs_shape, channels: int = 16, hidden: int = 128):
        super().__init__()
        self.obs_shape = _checked_shape(obs_shape)
        h, w, c = self.obs_shape
        self.conv = _orthogonal(nn.Conv2d(c, channels, kernel_size=3), math.sqrt(2))
        # the widest layer: oneDNN's GEMMs where MKL's are slow (fastrl/nn/linear.py)
        self.fc = _orthogonal(Linear(channels * (h - 2) * (w - 2), hidden), math.sqrt(2))
        self.out_features = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h, w, c = self.obs_shape
        if tuple(obs.shape[-3:]) == self.obs_shape:
            lead = obs.shape[:-3]
        elif obs.dim() >= 1 and obs.shape[-1] == h * w * c:
            lead = obs.shape[:-1]
        else:
            raise ValueError(f"obs must have shape [..., {h}, {w}, {c}] or [..., {h * w * c}], got {tuple(obs.shape)}")
        # NHWC -> contiguous NCHW float in one copy: oneDNN's convolution on the permuted (strided) view
        # takes a slower path, forward and backward (1.2-2x at MinAtar's batch sizes on the CPU)
        x = obs.reshape(-1, h, w, c).permute(0, 3, 1, 2)
        x = x.to(self.conv.weight.dtype, memory_format=torch.contiguous_format)
        x = torch.relu(self.conv(x)).flatten(1)
        return torch.relu(self.fc(x)).reshape(*lead, self.out_features)


class ConvQNetwork(nn.Module):
    """Q-values ``[..., n_actions]`` of image observations (the MinAtar paper's DQN network)."""

    def __init__(self, obs_shape, n_actions: int, channels: int = 16, hidden: int = 128):
        super().__init__()
        self.torso = MinAtarTorso(obs_shape, channels, hidden)
        self.head = _orthogonal(nn.Linear(hidden, n_actions), 1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.torso(obs))


class ConvActorCritic(nn.Module):
    """Separate policy and value networks on image observations, each a MinAtarTorso and a linear
    head, with fastrl.nn.ActorCritic's interface for discrete actions: ``dist`` (Categorical over
    logits ``[..., n_actions]``), ``value`` (``[...]``) and ``act``."""

    continuous = False

    def __init__(self, obs_shape, n_actions: int, channels: int = 16, hidden: int = 128):
        super().__init__()
        self.actor = nn.Sequential(MinAtarTorso(obs_shape, channels, hidden),
                                   _orthogonal(nn.Linear(hidden, n_actions), 0.01))
        self.critic = nn.Sequential(MinAtarTorso(obs_shape, channels, hidden), _orthogonal(nn.Linear(hidden, 1), 1.0))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def dist(self, obs: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=self.actor(obs), validate_args=False)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        logits = self.actor(obs)
        if deterministic:
            return logits.argmax(-1)
        return torch.distributions.Categorical(logits=logits, validate_args=False).sample()
