"""What REINFORCE, A2C and PPO share: their config fields, an actor-critic agent (with optional
observation normalization), the rollout that steps every env ``num_steps`` times with the
current policy, and the bootstrapped next values for GAE and returns — all on the device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from fastrl import distributed, ops
from fastrl.algos.common import TrainConfig, Trainer
from fastrl.nn import ActorCritic, ConvActorCritic
from fastrl.nn.normalize import ObsNormalizer, RewardScaler
from fastrl.utils.config import NON_NEGATIVE, POSITIVE, UNIT, ConfigError, Rule


@dataclass
class OnPolicyConfig(TrainConfig):
    """Fields of the actor-critic trainers."""

    gamma: float = 0.99
    """discount factor"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    entropy_coef: float = 0.0
    """entropy bonus coefficient"""
    max_grad_norm: float = 0.5
    """global gradient norm clip"""
    hidden: tuple[int, ...] = (64, 64)
    """hidden layer sizes of the policy and value MLPs (image observations: the one fully-connected
    width of their convolutional networks)"""
    normalize_obs: bool = False
    """normalize observations with running statistics"""
    init_log_std: float = 0.0
    """initial log standard deviation of a Gaussian policy (continuous actions)"""

    field_rules: ClassVar[dict[str, Rule]] = {
        "gamma": UNIT, "vf_coef": NON_NEGATIVE, "entropy_coef": NON_NEGATIVE, "max_grad_norm": POSITIVE,
        "hidden": POSITIVE,
    }
    renamed: ClassVar[dict[str, str]] = {"ent_coef": "entropy_coef"}


def check_normalizable(cfg, flag: str) -> None:
    """Standardizing advantages divides by their std over the batch (or minibatch): undefined for one sample."""
    if getattr(cfg, flag) and cfg.num_envs * cfg.num_steps < 2:
        raise ConfigError(f"{flag} needs at least 2 samples per batch; num_envs * num_steps is "
                          f"{cfg.num_envs * cfg.num_steps}", flag)


class GlobalRewardScaler(RewardScaler):
    """RewardScaler whose statistics are those of every rank's envs (each rank keeps its own
    envs' discounted returns): the scale is the same as one process stepping all the envs."""

    @torch.no_grad()
    def forward(self, reward: torch.Tensor, done: torch.Tensor) -> torch.Tensor:
        self.discounted.mul_(self.gamma).add_(reward)
        self.stats.update(distributed.all_gather_cat(self.discounted))
        self.discounted.masked_fill_(done, 0.0)
        return reward / (self.stats.var + self.eps).sqrt().to(reward.dtype)


def sample_actions(dist: torch.distributions.Distribution, envs: range, total: int) -> torch.Tensor:
    """A sample of ``dist`` (one row per env of ``envs``, a shard of ``total`` envs) from noise drawn
    for all ``total`` envs and sliced: each env's noise depends on its global index only, so a
    job of W processes (each sampling its shard, their RNGs in step) acts as one process would.
    Categorical: the exponential race (Gumbel-max) argmax(p / E), E ~ Exp(1); Normal: mean + std * eps."""
    rows = slice(envs.start, envs.stop)
    if isinstance(dist, torch.distributions.Categorical):
        probs = dist.probs
        noise = torch.empty(total, probs.shape[-1], device=probs.device).exponential_()[rows]
        return (probs / noise.clamp_min(torch.finfo(noise.dtype).tiny)).argmax(-1)
    if isinstance(dist, torch.distributions.Normal):
        mean = dist.mean
        eps = torch.randn(total, *mean.shape[1:], device=mean.device, dtype=mean.dtype)[rows]
        return mean + dist.stddev * eps
    if total == len(envs):
        return dist.sample()
    raise TypeError(f"under torchrun the policy must be a Categorical or Normal distribution (sampled from "
                    f"noise of the whole batch), got {type(dist).__name__}")


class OnPolicyTrainer(Trainer):
    """A trainer whose policy is an :class:`ActorCritic` (``self.agent``) optimized by
    ``self.optimizer``; subclasses build the optimizer after calling :meth:`build_agent`."""

    def build_agent(self) -> None:
        cfg = self.config
        agent = self.network
        if agent is None and self.image_obs:  # MinAtar's grids: the paper's conv network
            agent = ConvActorCritic(self.obs_shape, self.action_dim, hidden=cfg.hidden[0])
        elif agent is None:
            agent = ActorCritic(self.obs_dim, self.action_dim, continuous=not self.discrete,
                                hidden=tuple(cfg.hidden), init_log_std=cfg.init_log_std)
        self.agent = agent.to(self.device)
        self.obs_norm = ObsNormalizer(self.obs_dim).to(self.device) if cfg.normalize_obs else None

    def checkpointed(self):
        out = {"agent": self.agent, "optimizer": self.optimizer}
        if self.obs_norm is not None:
            out["obs_norm"] = self.obs_norm
        return out

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        return self.agent.act(self.features(obs), deterministic)

    def log_probs(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(a|s) and the policy entropy per sample, summed over action dims (with grad)."""
        dist = self.agent.dist(obs)
        logp, entropy = dist.log_prob(actions), dist.entropy()
        if not self.discrete:
            logp, entropy = logp.sum(-1), entropy.sum(-1)
        return logp, entropy

    @torch.no_grad()
    def collect_rollout(self, reward_scaler=None) -> dict[str, torch.Tensor]:
        """Steps every env ``num_steps`` times with the current policy (advancing ``self.obs`` and
        ``self.global_step``). Returns time-major ``[T, N, ...]`` tensors: obs (as fed to the
        networks), actions, logprobs, values, rewards (scaled if ``reward_scaler``), terminated,
        done, final_obs (features of the observation an episode ended on; meaningful where done)
        and ``last_value [N]``."""
        keys = ("obs", "actions", "logprobs", "values", "rewards", "terminated", "done", "final_obs")
        buf: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        agent, obs = self.agent, self.obs
        for _ in range(self.config.num_steps):
            x = self.features(obs, update=True)
            dist = agent.dist(x)
            action = sample_actions(dist, self.env_shard, self.config.num_envs)
            logp = dist.log_prob(action)
            if agent.continuous:
                logp = logp.sum(-1)
            next_obs, reward, term, trunc, info = self.env.step(action)
            done = term | trunc
            self.record_episodes(info)
            reward = reward.to(torch.float32)
            if reward_scaler is not None:
                reward = reward_scaler(reward, done)
            for k, v in zip(keys, (x, action, logp, agent.value(x), reward, term, done,
                                   self.features(info["final_obs"]))):
                buf[k].append(v)
            obs = next_obs
        self.obs = obs
        self.global_step += self.config.num_steps * self.config.num_envs
        batch = {k: torch.stack(v) for k, v in buf.items()}
        batch["last_value"] = agent.value(self.features(obs))
        return batch

    @torch.no_grad()
    def bootstrapped_next_values(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``next_values [T, N]``: V(s_{t+1}), except where an episode ended at t, where it is
        V(final observation) — the right bootstrap for a truncation. A termination ignores it (GAE
        and the returns bootstrap nothing there); when no episode of the rollout was truncated the
        value there is 0, on the CPU."""
        T, N = batch["rewards"].shape
        truncated = batch["done"] & ~batch["terminated"]
        if self.device.type == "cpu" and not bool(truncated.any()):
            # Nothing to bootstrap from a final observation (MinAtar's episodes have no time limit): skip
            # the critic over all T * N of them, 7% of a MinAtar PPO iteration. Reading the flag back is
            # free on the CPU; on a GPU it would be a sync, so there the critic always runs.
            final_values = torch.zeros_like(batch["values"])
        else:
            final_values = self.agent.value(batch["final_obs"].flatten(0, 1)).reshape(T, N)
        return ops.rollout_next_values(batch["values"], batch["last_value"], final_values=final_values,
                                       final_mask=batch["done"])

    def flat_log_probs(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The batch's observations flattened to ``[T * N, obs]``, and :meth:`log_probs` of its actions."""
        T, N = batch["rewards"].shape
        obs = batch["obs"].flatten(0, 1)
        logp, entropy = self.log_probs(obs, batch["actions"].reshape(T * N, *batch["actions"].shape[2:]))
        return obs, logp, entropy
