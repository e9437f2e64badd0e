"""The PyTorch physics of the native envs: the fallback of the C++/CUDA kernels.

One small class per env, a dataclass of gymnasium's keyword arguments (with their defaults) that
declares its id and dimensions in its class line. Its methods are the formulas of
csrc/core/envs/<env>.h written with torch ops on the SoA state ``[S, N]``; fastrl/envs/fallback.py
runs them over a batch. They agree with the native kernels to rounding: torch's sin, cos and pow
are not glibc's, which the native float64 kernels (and gymnasium) use. The native envs' registry
(fastrl/envs/registry.py) comes from fastrl._C; tests/envs/test_registry.py checks that these
classes declare the same envs, dimensions and keyword arguments.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

PI = math.pi


class Physics:
    """One native env's physics in PyTorch. A subclass is a frozen keyword-only dataclass whose
    fields are gymnasium's keyword arguments (the default is gymnasium's), declared as

        @dataclasses.dataclass(frozen=True, kw_only=True)
        class CartPole(Physics, env_id="CartPole-v1", state_dim=4, obs_dim=4, reset_draws=4):
            sutton_barto_reward: bool = False

    ``state_dim``: rows of the SoA state, in the layout of gymnasium's ``env.unwrapped.state``;
    ``reset_draws``: uniforms a reset draws (the ``kResetDraws`` of its C++ header).
    """

    id: ClassVar[str]
    state_dim: ClassVar[int]
    obs_dim: ClassVar[int]
    reset_draws: ClassVar[int]

    def __init_subclass__(cls, *, env_id: str, state_dim: int, obs_dim: int, reset_draws: int, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.id, cls.state_dim, cls.obs_dim, cls.reset_draws = env_id, state_dim, obs_dim, reset_draws

    @classmethod
    def defaults(cls) -> dict[str, bool | float]:
        """gymnasium's keyword arguments and their defaults, in declaration order."""
        return {f.name: f.default for f in dataclasses.fields(cls)}

    def initial_state(self, u: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        """The reset states ``[S, K]`` from ``reset_draws`` float64 uniforms ``[K]`` (core's reset)."""
        raise NotImplementedError

    def step(self, s: torch.Tensor, action: torch.Tensor, elapsed: torch.Tensor):
        """One step of every env: updates ``s [S, N]`` in place and returns ``(reward [N],
        terminated [N])``. ``elapsed [N]``: steps so far in each episode."""
        raise NotImplementedError

    def observe(self, s: torch.Tensor) -> torch.Tensor:
        """The observations ``[N, O]`` of states ``s [S, N]``, a new tensor: the state itself here.
        Written through a transposed view: 5x faster on the CPU than s.t().contiguous(), whose
        copy gathers along the strided source."""
        obs = s.new_empty(s.shape[1], s.shape[0])
        obs.t().copy_(s)
        return obs


def _uniform(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u  # numpy's Generator.uniform


def _clip(x, low, high):
    return torch.clamp(x, low, high)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CartPole(Physics, env_id="CartPole-v1", state_dim=4, obs_dim=4, reset_draws=4):
    """csrc/core/envs/cartpole.h. State [x, x_dot, theta, theta_dot]; actions 0 (left), 1 (right)."""

    sutton_barto_reward: bool = False

    def initial_state(self, u, dtype):
        return torch.stack([_uniform(x, -0.05, 0.05) for x in u]).to(dtype)

    def step(self, s, action, elapsed):
        x, x_dot, theta, theta_dot = s  # views of the state's rows, updated in place below
        # Exactly -10 or +10 for actions 0 and 1 (validated), 2x faster than torch.where(action == 1, ...).
        force = action.to(s.dtype).mul_(20.0).sub_(10.0)
        costheta, sintheta = torch.cos(theta), torch.sin(theta)
        total_mass, polemass_length = 0.1 + 1.0, 0.1 * 0.5
        temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass
        thetaacc = (9.8 * sintheta - costheta * temp) / (
            0.5 * (4.0 / 3.0 - 0.1 * (costheta * costheta) / total_mass)
        )
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        # Euler steps in place, each row read before it is written (x before x_dot, ...).
        x += 0.02 * x_dot
        x_dot += 0.02 * xacc
        theta += 0.02 * theta_dot
        theta_dot += 0.02 * thetaacc
        theta_threshold = 12 * 2 * PI / 360
        terminated = (x.abs() > 2.4) | (theta.abs() > theta_threshold)
        if self.sutton_barto_reward:
            reward = torch.where(terminated, -1.0, 0.0).to(x.dtype)
        else:
            reward = torch.ones_like(x)
        return reward, terminated


def _acrobot_dsdt(s, a):
    theta1, theta2, dtheta1, dtheta2 = s
    d1 = 0.25 + (1.25 + torch.cos(theta2)) + 1.0 + 1.0
    d2 = (0.25 + 0.5 * torch.cos(theta2)) + 1.0
    phi2 = 0.5 * 9.8 * torch.cos(theta1 + theta2 - PI / 2.0)
    phi1 = (
        -0.5 * dtheta2**2 * torch.sin(theta2)
        - 1.0 * dtheta2 * dtheta1 * torch.sin(theta2)
        + (0.5 + 1.0) * 9.8 * torch.cos(theta1 - PI / 2)
        + phi2
    )
    ddtheta2 = (a + d2 / d1 * phi1 - 0.5 * dtheta1**2 * torch.sin(theta2) - phi2) / (
        0.25 + 1.0 - d2**2 / d1
    )
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return torch.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])


@dataclasses.dataclass(frozen=True, kw_only=True)
class Acrobot(Physics, env_id="Acrobot-v1", state_dim=4, obs_dim=6, reset_draws=4):
    """csrc/core/envs/acrobot.h. State [theta1, theta2, dtheta1, dtheta2]; torques -1, 0, +1."""

    def initial_state(self, u, dtype):
        # gymnasium draws this reset state as float32
        return torch.stack([_uniform(x, -0.1, 0.1) for x in u]).float().to(dtype)

    def step(self, s, action, elapsed):
        dt = 0.2
        a = (action - 1).to(s.dtype)
        k1 = _acrobot_dsdt(s, a)
        k2 = _acrobot_dsdt(s + dt / 2.0 * k1, a)
        k3 = _acrobot_dsdt(s + dt / 2.0 * k2, a)
        k4 = _acrobot_dsdt(s + dt * k3, a)
        y = s + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        # wrap() into [-pi, pi] by whole turns, as gymnasium's loops do.
        turns = torch.where(y[:2] > PI, torch.ceil((y[:2] - PI) / (2 * PI)), 0.0) - torch.where(
            y[:2] < -PI, torch.ceil((-PI - y[:2]) / (2 * PI)), 0.0
        )
        angles = y[:2] - turns * (2 * PI)
        s.copy_(torch.stack(
            [angles[0], angles[1], _clip(y[2], -4 * PI, 4 * PI), _clip(y[3], -9 * PI, 9 * PI)]
        ))
        terminated = -torch.cos(s[0]) - torch.cos(s[1] + s[0]) > 1.0
        return torch.where(terminated, 0.0, -1.0).to(s.dtype), terminated

    def observe(self, s):
        return torch.stack(
            [torch.cos(s[0]), torch.sin(s[0]), torch.cos(s[1]), torch.sin(s[1]), s[2], s[3]], dim=1
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class MountainCar(Physics, env_id="MountainCar-v0", state_dim=2, obs_dim=2, reset_draws=1):
    """csrc/core/envs/mountain_car.h. State [position, velocity]; actions 0, 1, 2 (push left,
    none, right)."""

    goal_velocity: float = 0.0

    def initial_state(self, u, dtype):
        return torch.stack([_uniform(u[0], -0.6, -0.4), 0 * u[0]]).to(dtype)

    def step(self, s, action, elapsed):
        position, velocity = s
        velocity = velocity + ((action - 1).to(s.dtype) * 0.001 + torch.cos(3 * position) * -0.0025)
        velocity = _clip(velocity, -0.07, 0.07)
        position = _clip(position + velocity, -1.2, 0.6)
        velocity = torch.where((position == -1.2) & (velocity < 0), 0.0, velocity)
        terminated = (position >= 0.5) & (velocity >= self.goal_velocity)
        s.copy_(torch.stack([position, velocity]))
        return torch.full_like(position, -1.0), terminated


@dataclasses.dataclass(frozen=True, kw_only=True)
class MountainCarContinuous(Physics, env_id="MountainCarContinuous-v0", state_dim=2, obs_dim=2, reset_draws=1):
    """csrc/core/envs/continuous_mountain_car.h. State [position, velocity]; one force action,
    clipped to [-1, 1]."""

    goal_velocity: float = 0.0

    def initial_state(self, u, dtype):
        return torch.stack([_uniform(u[0], -0.6, -0.4), 0 * u[0]]).to(dtype)

    def step(self, s, action, elapsed):
        # gymnasium stores this state as float32 after every step; the first step of an episode
        # (float64 state there) is computed in float32 here too, within float32 rounding of it.
        a = action[:, 0].float()
        position, velocity = s.float()
        force = _clip(a, -1.0, 1.0)
        velocity = _clip(velocity + (force * 0.0015 - 0.0025 * torch.cos(3 * position)), -0.07, 0.07)
        position = _clip(position + velocity, -1.2, 0.6)
        velocity = torch.where((position == -1.2) & (velocity < 0), 0.0, velocity)
        terminated = (position >= 0.45) & (velocity >= self.goal_velocity)
        reward = torch.where(terminated, 100.0, 0.0) - a.double() ** 2 * 0.1
        s.copy_(torch.stack([position, velocity]))
        return reward.to(s.dtype), terminated


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pendulum(Physics, env_id="Pendulum-v1", state_dim=2, obs_dim=3, reset_draws=2):
    """csrc/core/envs/pendulum.h. State [theta, theta_dot]; one torque action, clipped to [-2, 2]."""

    g: float = 10.0

    def initial_state(self, u, dtype):
        return torch.stack([_uniform(u[0], -PI, PI), _uniform(u[1], -1.0, 1.0)]).to(dtype)

    def step(self, s, action, elapsed):
        th, thdot = s
        u = _clip(action[:, 0].float(), -2.0, 2.0)
        angle = torch.remainder(th + PI, 2 * PI) - PI
        costs = angle * angle + 0.1 * (thdot * thdot) + (0.001 * (u * u)).to(s.dtype)
        newthdot = thdot + (3 * self.g / 2 * torch.sin(th) + (3.0 * u).to(s.dtype)) * 0.05
        newthdot = _clip(newthdot, -8.0, 8.0)
        th += newthdot * 0.05
        thdot.copy_(newthdot)
        return -costs, torch.zeros_like(th, dtype=torch.bool)

    def observe(self, s):
        return torch.stack([torch.cos(s[0]), torch.sin(s[0]), s[1]], dim=1)


# The physics of every native env, by gymnasium id.
FALLBACKS: dict[str, type[Physics]] = {
    physics.id: physics for physics in (CartPole, Acrobot, MountainCar, MountainCarContinuous, Pendulum)
}
