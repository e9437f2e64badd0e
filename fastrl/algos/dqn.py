"""Deep Q-Network (Mnih et al. 2015) with Double DQN and n-step targets.

A Q-network maps an observation to a vector of Q-values, one per action; the policy is the
argmax, with epsilon-greedy exploration on a linear schedule. Transitions go into a replay buffer
on the training device; targets come from a target network (hard or Polyak updates).

n-step targets are discounted returns over windows of n consecutive steps
(``fastrl.algos.common.bootstrapped_returns``):
  G_t = r_t + g r_{t+1} + ... + g^{n-1} r_{t+n-1} + g^n Q_target(s_{t+n})
cut where an episode ends; a truncation inside the window bootstraps from the value of that
step's final observation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from fastrl import distributed
from fastrl.algos.common import TrainConfig, Trainer, bootstrapped_returns
from fastrl.nn import ConvQNetwork, QNetwork
from fastrl.optim import RMSprop
from fastrl.utils.config import NON_NEGATIVE, POSITIVE, UNIT, ConfigError, Range, Rule


@dataclass
class DQNConfig(TrainConfig):
    num_envs: int = 8
    """environments stepped in parallel (each iteration steps all of them once)"""
    learning_rate: float = 1e-3
    """the optimizer's step size"""
    optimizer: str = "adam"
    """adam, or rmsprop: centred RMSProp with squared-gradient momentum 0.95 and eps 0.01, as the
    MinAtar paper's DQN (the minatar package's examples/dqn.py) builds torch's RMSprop"""
    buffer_size: int = 50_000
    """replay capacity in transitions"""
    batch_size: int = 128
    """transitions per gradient step"""
    gamma: float = 0.99
    """discount factor"""
    n_step: int = 3
    """steps summed into each target before bootstrapping"""
    tau: float = 1.0
    """target update rate: 1.0 copies the online network, < 1 is a Polyak average"""
    target_update_every: int = 250
    """iterations between target-network updates"""
    train_every: int = 1
    """iterations between gradient steps"""
    gradient_steps: int = 1
    """gradient steps each time the network trains"""
    learning_starts: int = 2_000
    """environment steps of pure exploration before training starts"""
    start_epsilon: float = 1.0
    """exploration rate at the start"""
    end_epsilon: float = 0.05
    """exploration rate at the end of the schedule"""
    exploration_fraction: float = 0.3
    """fraction of total_steps over which epsilon decays linearly"""
    exploration_steps: int | None = None
    """environment steps over which epsilon decays linearly, whatever total_steps is (None:
    exploration_fraction of total_steps)"""
    double_dqn: bool = True
    """select the next action with the online network, evaluate it with the target network"""
    loss: str = "huber"
    """Bellman loss: huber or mse"""
    max_grad_norm: float = 10.0
    """global gradient norm clip"""
    hidden: tuple[int, ...] = (120, 84)
    """hidden layer sizes of the Q-network (image observations: the one fully-connected width of the
    convolutional Q-network)"""

    field_rules: ClassVar[dict[str, Rule]] = {
        "learning_rate": POSITIVE, "buffer_size": POSITIVE, "batch_size": POSITIVE, "gamma": UNIT,
        "n_step": POSITIVE, "tau": Range(0, 1, low_open=True), "target_update_every": POSITIVE,
        "train_every": POSITIVE, "gradient_steps": POSITIVE, "learning_starts": NON_NEGATIVE,
        "start_epsilon": UNIT, "end_epsilon": UNIT, "exploration_fraction": UNIT,
        "exploration_steps": NON_NEGATIVE, "loss": ("huber", "mse"), "optimizer": ("adam", "rmsprop"),
        "max_grad_norm": POSITIVE, "hidden": POSITIVE,
    }

    def check(self) -> None:
        super().check()
        if self.buffer_size < self.num_envs * (self.n_step + 1):
            raise ConfigError(f"buffer_size must hold at least n_step+1 steps of every env "
                              f"({self.num_envs * (self.n_step + 1)}), got {self.buffer_size}", "buffer_size")


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """``start`` at t=0 to ``end`` at t=duration, then constant (``end`` from the start when the
    duration is 0: no decay)."""
    if t >= duration:
        return end
    return end + (start - end) * (1.0 - t / duration)


class ReplayBuffer:
    """Time-major ring buffer ``[capacity_steps, num_envs]`` on the device, so the n steps after
    any sampled transition of an env are contiguous in time."""

    def __init__(self, capacity: int, num_envs: int, obs_shape, device, obs_dtype=torch.float32):
        self.steps = max(1, capacity // num_envs)
        self.num_envs = num_envs
        shape = (self.steps, num_envs)
        kw = {"device": device}
        self.obs = torch.zeros(*shape, *obs_shape, dtype=obs_dtype, **kw)
        self.next_obs = torch.zeros(*shape, *obs_shape, dtype=obs_dtype, **kw)  # final obs where done
        self.actions = torch.zeros(shape, dtype=torch.int64, **kw)
        self.rewards = torch.zeros(shape, dtype=torch.float32, **kw)
        self.terminated = torch.zeros(shape, dtype=torch.bool, **kw)
        self.done = torch.zeros(shape, dtype=torch.bool, **kw)
        self.pos = 0  # next row to write
        self.size = 0  # rows written, up to self.steps

    def add(self, obs, next_obs, actions, rewards, terminated, done) -> None:
        i = self.pos
        self.obs[i], self.next_obs[i], self.actions[i] = obs, next_obs, actions
        self.rewards[i], self.terminated[i], self.done[i] = rewards, terminated, done
        self.pos = (i + 1) % self.steps
        self.size = min(self.size + 1, self.steps)

    def sample_windows(self, batch: int, n: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``[n, batch]`` (n consecutive steps, wrapping around the ring) and env columns
        ``[batch]`` of windows that lie entirely in written, ordered data."""
        if self.size < n:
            raise ValueError(f"buffer holds {self.size} steps, fewer than n_step={n}")
        oldest = self.pos if self.size == self.steps else 0
        dev = self.rewards.device
        start = torch.randint(0, self.size - n + 1, (batch,), device=dev, generator=generator)
        rows = (oldest + start[None] + torch.arange(n, device=dev)[:, None]) % self.steps
        cols = torch.randint(0, self.num_envs, (batch,), device=dev, generator=generator)
        return rows, cols

    def state_dict(self) -> dict:
        fields = ("obs", "next_obs", "actions", "rewards", "terminated", "done")
        return {**{k: getattr(self, k) for k in fields}, "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        expected = set(self.state_dict())
        if set(state) != expected:
            raise KeyError(f"replay buffer state must have the keys {sorted(expected)}, got {sorted(state)}")
        for k in ("pos", "size"):
            if isinstance(state[k], bool) or not isinstance(state[k], int) or not 0 <= state[k] <= self.steps:
                raise ValueError(f"replay buffer {k} must be an int in [0, {self.steps}], got {state[k]!r}")
        for k, v in state.items():
            if isinstance(getattr(self, k), torch.Tensor):
                if not isinstance(v, torch.Tensor) or v.shape != getattr(self, k).shape:
                    raise ValueError(f"replay buffer {k} must be a tensor of shape {tuple(getattr(self, k).shape)}")
                getattr(self, k).copy_(v)
        self.pos, self.size = state["pos"], state["size"]


def n_step_targets(rewards, terminated, done, next_q, gamma):
    """Targets ``[B]`` of windows ``[n, B]``: ``next_q[k]`` is the bootstrap value of step k's next
    (or final) observation. Truncations inside the window bootstrap from their own next_q."""
    return bootstrapped_returns(rewards, next_q, terminated, done, gamma)[0]


class DQN(Trainer):
    algo = "dqn"
    Config = DQNConfig
    per_rank_modules = frozenset({"buffer"})  # the transitions of this rank's envs

    def validate(self) -> None:
        if not self.discrete:
            raise ConfigError(f"DQN needs a discrete action space; env_id {self.config.env_id!r} has "
                              f"{self.env.single_action_space}", "env_id")
        try:  # each rank samples its share of every batch from its own envs' transitions
            distributed.shard(self.config.batch_size, self.world, name="batch_size")
        except ValueError as e:
            raise ConfigError(str(e), "batch_size") from None

    def setup(self) -> None:
        cfg = self.config
        q = self.network
        if q is None and self.image_obs:  # MinAtar's grids: the paper's conv network
            q = ConvQNetwork(self.obs_shape, self.action_dim, hidden=cfg.hidden[0])
        elif q is None:
            q = QNetwork(self.obs_dim, self.action_dim, tuple(cfg.hidden))
        self.q = q.to(self.device)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        if cfg.optimizer == "rmsprop":
            # fastrl's: torch's, its step one fused kernel (a quarter of a MinAtar DQN frame's time before)
            self.optimizer = RMSprop(self.q.parameters(), lr=cfg.learning_rate, alpha=0.95, eps=0.01, centered=True)
        else:  # fused: one kernel updates every parameter (3x faster than the per-tensor loop for small nets)
            self.optimizer = torch.optim.Adam(self.q.parameters(), lr=cfg.learning_rate, fused=True)
        # This rank's share of the capacity, for its envs: the same number of steps per env
        # Images are stored as the env gives them (MinAtar: bool, 8x smaller than float32).
        space_dtype = torch.from_numpy(np.empty(0, self.env.single_observation_space.dtype)).dtype
        obs_shape, obs_dtype = (self.obs_shape, space_dtype) if self.image_obs else ((self.obs_dim,), torch.float32)
        self.buffer = ReplayBuffer(cfg.buffer_size // self.world.size, self.env.num_envs, obs_shape,
                                   self.device, obs_dtype)

    def checkpointed(self):
        return {"q": self.q, "q_target": self.q_target, "optimizer": self.optimizer, "buffer": self.buffer}

    @torch.no_grad()
    def act(self, obs, deterministic: bool = True):
        return self.q(self.features(obs)).argmax(-1)

    def epsilon(self) -> float:
        cfg = self.config
        duration = cfg.exploration_steps
        if duration is None:  # a fraction: a longer run explores for longer
            duration = int(cfg.exploration_fraction * cfg.total_steps)
        return linear_schedule(cfg.start_epsilon, cfg.end_epsilon, duration, self.global_step)

    def train_iteration(self):
        cfg = self.config
        metrics = self._collect()
        ready = self.global_step >= cfg.learning_starts and self.buffer.size >= cfg.n_step
        if ready and self.iteration % cfg.train_every == 0:
            metrics.update(self._learn(cfg.gradient_steps))
        if self.iteration % cfg.target_update_every == 0:
            with torch.no_grad():
                for p, tp in zip(self.q.parameters(), self.q_target.parameters()):
                    tp.lerp_(p, cfg.tau)
        return metrics

    # -- phase 1: act and store --------------------------------------------------------------
    @torch.no_grad()
    def _collect(self):
        cfg = self.config
        obs = self.features(self.obs)
        greedy = self.q(obs).argmax(-1)
        # Noise drawn for the whole job's envs and sliced: each env's depends on its global index only.
        mine = slice(self.env_shard.start, self.env_shard.stop)
        explore = torch.rand(cfg.num_envs, device=self.device)[mine] < self.epsilon()
        random_actions = torch.randint(0, self.action_dim, (cfg.num_envs,), device=self.device)[mine]
        actions = torch.where(explore, random_actions, greedy)
        next_obs, reward, term, trunc, info = self.env.step(actions)
        done = term | trunc
        self.record_episodes(info)
        ended = done.view(-1, *[1] * (obs.dim() - 1))  # [N, 1, ...] against obs [N, ...]
        final = torch.where(ended, self.features(info["final_obs"]), self.features(next_obs))
        self.buffer.add(obs, final, actions, reward.to(torch.float32), term, done)
        self.obs = next_obs
        self.global_step += cfg.num_envs
        return {"epsilon": torch.tensor(self.epsilon())}

    # -- phase 2: learn from replay -----------------------------------------------------------
    def _learn(self, steps: int = 1) -> dict[str, torch.Tensor]:
        """``steps`` gradient steps (the metrics of the last). The windows of every step are drawn
        first, in the order the steps would draw them, so that one forward of the target network
        (unchanged until the steps end) serves them all: one batch of ``steps * B`` rows costs less
        than ``steps`` batches of B (MinAtar's B = 32: 1.1 -> 0.6 ms for 4 steps on this CPU)."""
        windows = [self.sample_windows() for _ in range(steps)]
        metrics = {}
        for (rows, cols), q_next in zip(windows, self.target_q_values(windows)):
            metrics = self.learn_on(rows, cols, q_next)
        return metrics

    @torch.no_grad()
    def target_q_values(self, windows: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """Q_target of the next observations of each window set (``rows [n, B]``, ``cols [B]``):
        ``[n, B, n_actions]`` each, from one forward of the target network over all of them."""
        b = self.buffer
        next_obs = torch.cat([b.next_obs[rows, cols] for rows, cols in windows])  # [steps * n, B, ...]
        return list(self.q_target(next_obs).chunk(len(windows)))

    def sample_windows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's windows of a batch: rows ``[n_step, B / W]`` and env columns ``[B / W]`` of
        its buffer. The batch of B windows is drawn alike on every rank (their RNGs are in step)
        and each rank takes its slice, each window from its own envs."""
        cfg = self.config
        rows, cols = self.buffer.sample_windows(cfg.batch_size, cfg.n_step)
        part = distributed.shard(cfg.batch_size, self.world, name="batch_size")
        return rows[:, part.start:part.stop], cols[part.start:part.stop]

    def learn_on(self, rows: torch.Tensor, cols: torch.Tensor,
                 q_next_target: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One gradient step on the windows (``rows [n, B]``, ``cols [B]`` of the buffer), the
        gradient averaged over ranks: the step on every rank's windows together.
        ``q_next_target``: the target network's Q-values of their next observations, if computed
        already (:meth:`target_q_values`)."""
        cfg, b = self.config, self.buffer
        with torch.no_grad():
            if q_next_target is None:
                q_next_target = self.target_q_values([(rows, cols)])[0]
            if cfg.double_dqn:
                next_obs = b.next_obs[rows, cols]  # [n, B, obs_dim] or [n, B, H, W, C]
                best = self.q(next_obs).argmax(-1, keepdim=True)
                next_q = q_next_target.gather(-1, best).squeeze(-1)
            else:
                next_q = q_next_target.max(-1).values
            target = n_step_targets(b.rewards[rows, cols], b.terminated[rows, cols], b.done[rows, cols],
                                    next_q, cfg.gamma)
        first = rows[0]
        q = self.q(b.obs[first, cols]).gather(-1, b.actions[first, cols][:, None]).squeeze(-1)
        loss = F.smooth_l1_loss(q, target) if cfg.loss == "huber" else F.mse_loss(q, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.q.parameters())
        torch.nn.utils.clip_grad_norm_(self.q.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        return {"td_loss": loss.detach(), "q_values": q.detach().mean()}
