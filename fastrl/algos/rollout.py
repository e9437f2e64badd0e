"""The on-policy rollout shared by REINFORCE, A2C and PPO: step every env ``num_steps`` times
with the current policy, keeping everything on the device."""

from __future__ import annotations

import torch

from fastrl import ops
from fastrl.nn import ActorCritic


@torch.no_grad()
def collect_rollout(trainer, agent: ActorCritic, num_steps: int, reward_scaler=None) -> dict[str, torch.Tensor]:
    """Time-major ``[T, N, ...]`` tensors: obs (as fed to the networks), actions, logprobs,
    values, rewards (scaled if ``reward_scaler``), terminated, done, final_obs (features of
    the observation an episode ended on; meaningful where done) and ``last_value [N]``."""
    keys = ("obs", "actions", "logprobs", "values", "rewards", "terminated", "done", "final_obs")
    buf: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    obs = trainer.obs
    for _ in range(num_steps):
        x = trainer.features(obs, update=True)
        dist = agent.dist(x)
        action = dist.sample()
        logp = dist.log_prob(action)
        if agent.continuous:
            logp = logp.sum(-1)
        next_obs, reward, term, trunc, info = trainer.env.step(action)
        done = term | trunc
        trainer.record_episodes(info)
        reward = reward.to(torch.float32)
        if reward_scaler is not None:
            reward = reward_scaler(reward, done)
        for k, v in zip(keys, (x, action, logp, agent.value(x), reward, term, done,
                               trainer.features(info["final_obs"]))):
            buf[k].append(v)
        obs = next_obs
    trainer.obs = obs
    trainer.global_step += num_steps * trainer.config.num_envs
    batch = {k: torch.stack(v) for k, v in buf.items()}
    batch["last_value"] = agent.value(trainer.features(obs))
    return batch


@torch.no_grad()
def bootstrapped_next_values(agent: ActorCritic, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``next_values [T, N]`` for GAE: V(s_{t+1}), except where an episode ended at t, where it is
    V(final observation) — the right bootstrap for a truncation (a termination ignores it)."""
    T, N = batch["rewards"].shape
    final_values = agent.value(batch["final_obs"].reshape(T * N, -1)).reshape(T, N)
    return ops.rollout_next_values(batch["values"], batch["last_value"], final_values=final_values,
                                   final_mask=batch["done"])
