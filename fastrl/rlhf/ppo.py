"""PPO for language models with a KL penalty to a frozen reference (Ziegler et al. 2019;
Ouyang et al. 2022).

Each step:
  rollout     sample responses to a batch of prompts with the policy; score them with the
              reward model; old log-probs, reference log-probs and values of every response token
              (the old ones from the update's own forward when epochs = num_minibatches = 1, no
              reference pass when kl_coef = 0)
  advantages  r_t = -beta * (logp_t - ref_t), plus the reward-model score on the last token;
              token-level GAE (``fastrl.ops.gae``) over the response mask; whitened
  update      a few epochs of minibatches: fused clipped PPO loss from the hidden states and the
              LM head (``fastrl.ops.ppo_loss_from_hidden``), and a clipped value loss for the
              critic (its own model and optimizer)
  KL control  beta follows the adaptive controller toward ``target_kl`` (or stays fixed)

Everything stays on the device: ``step`` returns detached scalar tensors, read them when you log.

Under torchrun (docs/distributed.md) ``batch_size`` counts the whole job: each rank samples its
share of the prompts, takes its rows of the minibatches one process would form, whitens advantages
over the job's tokens, normalizes both losses by the job's token counts and averages the gradients,
so the update is the one of a single process; metrics and the KL controller see the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastrl import distributed
from fastrl.nn.gpt import GPT, Generation, ScalarGPT, generate, last_token_index
from fastrl.nn.hf import as_causal_lm, as_scalar
from fastrl.ops import gae, ppo_loss_from_hidden, value_loss
from fastrl.rlhf.config import PolicyTrainingConfig
from fastrl.rlhf.reward_model import RewardModel
from fastrl.rlhf.rewards import make_scorer
from fastrl.rlhf.rollout import (
    TrainsOnPrompts,
    frozen_copy,
    global_counts,
    global_metrics,
    minibatch_rows,
    optimizer_step,
    response_hidden,
    response_values,
    rollout_logprobs,
    sequence_kl,
)
from fastrl.rlhf.sharding import FullState, gathered
from fastrl.rlhf.tokenizer import Tokenizer, as_tokenizer, check_vocab
from fastrl.utils.config import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
)
from fastrl.utils.stats import masked_mean

__all__ = ["RLHFPPOConfig", "PPOTrainer", "AdaptiveKLController", "per_token_rewards", "token_gae"]


@dataclass
class RLHFPPOConfig(PolicyTrainingConfig):
    """PPO-RLHF settings (the classic trainers' PPO is ``fastrl.algos.PPOConfig``); checked at
    construction and when a trainer starts. The sampling, optimizer and loss fields are
    PolicyTrainingConfig's; the KL is in the rewards here, so the loss has no KL term."""

    epochs: int = 2
    batch_size: int = 64
    """Prompts (and so responses) per step."""
    critic_learning_rate: float = 3e-4
    """Critic AdamW learning rate."""
    value_clip: float | None = 0.2
    """Clip of the value change around the rollout's values (None: unclipped)."""
    gamma: float = 1.0
    """Discount over response tokens."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    kl_coef: float = 0.1
    """beta: weight of the per-token KL penalty (initial value when adaptive)."""
    target_kl: float | None = 3.0
    """Adaptive KL control toward this KL per response in nats; None keeps beta fixed."""
    kl_horizon: int = 10000
    """Responses over which beta moves by the clipped relative KL error (larger: slower)."""
    entropy_coef: float = 0.0
    """Entropy bonus weight in the policy loss."""

    field_rules = {
        "batch_size": AT_LEAST_ONE, "kl_horizon": AT_LEAST_ONE, "critic_learning_rate": POSITIVE,
        "value_clip": NON_NEGATIVE, "gamma": UNIT, "gae_lambda": UNIT, "kl_coef": NON_NEGATIVE,
        "target_kl": POSITIVE,
    }
    renamed = {"critic_lr": "critic_learning_rate", "lam": "gae_lambda"}


def per_token_rewards(scores, logprobs, ref_logprobs, mask, kl_coef) -> torch.Tensor:
    """``[B, N]``: ``-kl_coef * (logp_t - ref_t)`` on response tokens, 0 on padding, plus the
    sequence score ``scores [B]`` on each row's last response token."""
    rewards = torch.where(mask, -kl_coef * (logprobs - ref_logprobs), 0)
    last = last_token_index(mask)[:, None]
    return rewards.scatter_add(1, last, scores[:, None].to(rewards.dtype))


def token_gae(rewards, values, mask, gamma: float, lam: float):
    """GAE over the response tokens of each row (``[B, N]``, mask a prefix of each row): the
    episode ends at the last response token (no bootstrap after it), padding passes through.
    Returns ``(advantages, returns)``."""
    last = torch.zeros_like(mask).scatter_(1, last_token_index(mask)[:, None], True)
    next_values = torch.nn.functional.pad(values[:, 1:], (0, 1))
    return gae(rewards, values, next_values, last, last, gamma, lam, mask=mask, time_dim=1)


class AdaptiveKLController:
    """beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon) (Ziegler et al.);
    with ``target=None`` beta stays fixed. ``value`` is a 0-d tensor, updated without a sync."""

    def __init__(self, init: float, target: float | None, horizon: int, device=None):
        self.value = torch.tensor(float(init), device=device)
        self.target, self.horizon = target, horizon

    def update(self, kl: torch.Tensor, n: int) -> None:
        if self.target is not None:
            error = (kl / self.target - 1).clamp(-0.2, 0.2)
            self.value = self.value * (1 + error * n / self.horizon)

    def state_dict(self) -> dict:
        return {"value": self.value.detach().clone()}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"].to(self.value.device, self.value.dtype)


class PPOTrainer(TrainsOnPrompts):
    """PPO-RLHF on ``policy`` (a :class:`GPT`, or ``fastrl.nn.hf.HFCausalLM`` with a critic
    given), trained in place. The reference is a frozen copy of the policy at construction; the
    critic (a :class:`ScalarGPT`, or a ``transformers`` classifier as ``fastrl.nn.hf.HFScalar``)
    starts from the policy's trunk unless given. ``reward_model`` is a :class:`RewardModel` or a
    ``transformers`` classifier as :class:`fastrl.rlhf.reward_model.HFRewardModel`, or reward
    functions ``(prompts, completions) -> list[float]`` (one or a list, summed with
    ``reward_weights``; see :mod:`fastrl.rlhf.rewards`)."""

    def __init__(self, policy: GPT, reward_model: RewardModel, tokenizer: Tokenizer,
                 cfg: RLHFPPOConfig, critic: ScalarGPT | None = None,
                 reward_weights: list[float] | None = None):  # fmt: skip
        RLHFPPOConfig.checked("cfg", cfg)
        policy, tokenizer = as_causal_lm(policy, "policy"), as_tokenizer(tokenizer)  # transformers objects wrapped
        critic = None if critic is None else as_scalar(critic, "critic")
        check_vocab(tokenizer, policy.cfg.vocab_size, "policy")
        self.score = make_scorer(reward_model, tokenizer, reward_weights)
        if critic is None and not isinstance(policy, GPT):
            raise ValueError("pass a critic: only a fastrl GPT policy can lend its trunk to one")
        critic = critic if critic is not None else ScalarGPT.from_lm(policy)
        check_vocab(tokenizer, critic.cfg.vocab_size, "critic")
        self.cfg, self.tokenizer = cfg, tokenizer
        self.policy, self.reward_model, self.critic = policy, reward_model, critic
        self.reference = frozen_copy(policy)
        self.join_job(cfg, "batch_size", policy, self.reference, self.critic)
        self.policy_opt = torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate)
        self.critic_opt = torch.optim.AdamW(self.critic.parameters(), lr=cfg.critic_learning_rate)
        self.kl = AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon, self.device)

    def step(self, prompt_ids, prompt_mask, reward_kwargs=None) -> tuple[dict[str, torch.Tensor], Generation]:
        """One rollout + update on prompts ``[B, P]`` (any padding side; under torchrun this rank's
        share); ``reward_kwargs``: their dataset columns (one value per prompt) for the reward
        functions. Returns detached scalar metrics and the sampled generation."""
        with gathered(self.policy):  # sharded: ranks may stop sampling after different numbers of tokens
            gen = generate(self.policy, prompt_ids, prompt_mask, max_new_tokens=self.cfg.max_new_tokens,
                           temperature=self.cfg.temperature, stop_token=self.tokenizer.eos_id,
                           pad_token=self.tokenizer.pad_id, generator=self.generator)  # fmt: skip
        return self.update(gen, reward_kwargs), gen

    def update(self, gen: Generation, reward_kwargs=None) -> dict[str, torch.Tensor]:
        """Scores, log-probs, values and advantages of the sampled responses ``gen``, then
        ``epochs`` passes of ``num_minibatches`` steps of the policy and the critic. Returns detached
        scalar metrics (of the whole job under torchrun)."""
        cfg, world = self.cfg, self.world
        mask = gen.response_mask  # [B, N]
        n = gen.ids.shape[0]
        minibatches = minibatch_rows(self, n)
        # hidden: the next minibatch's forward, when the rollout already made it; kl_coef = 0 stays 0
        # (the controller scales it): the reference has no part in the rewards
        hidden, logp, ref_logp = rollout_logprobs(self, gen, minibatches, with_reference=bool(cfg.kl_coef))
        with torch.no_grad():
            values = response_values(self.critic, gen)
            scores = self.score(gen, reward_kwargs)  # [rows]

        # advantages
        # without a reference (kl_coef = 0) the KL term is 0: logp stands in for ref_logp
        rewards = per_token_rewards(scores, logp, logp if ref_logp is None else ref_logp, mask, self.kl.value)
        advantages, returns = token_gae(rewards, values, mask, cfg.gamma, cfg.gae_lambda)
        advantages = distributed.whiten(advantages, mask)  # over the job's tokens (whiten on one process)

        # update; under torchrun both losses are this rank's share of the minibatch's token mean,
        # and average_gradients divides the ranks' sum by W
        counts = global_counts(mask, minibatches, "token_mean") if world.distributed else [{}] * len(minibatches)
        for rows, minibatch_counts in zip(minibatches, counts):
            if hidden is None:
                hidden = response_hidden(self.policy, gen, rows)
            # read after the forward: under FSDP the gathered weight (the module holds its shard otherwise)
            weight = self.policy.lm_head.weight
            loss, stats = ppo_loss_from_hidden(
                hidden, weight, gen.response[rows], logp[rows], advantages[rows], mask=mask[rows],
                clip_low=cfg.clip_low, entropy_coef=cfg.entropy_coef, temperature=cfg.temperature,
                importance_level=cfg.importance_level, policy_loss=cfg.policy_loss, **minibatch_counts)  # fmt: skip
            optimizer_step(self, self.policy, self.policy_opt, loss)
            hidden = None

            v_loss = value_loss(response_values(self.critic, gen, rows), values[rows],
                                returns[rows], clip=cfg.value_clip, mask=mask[rows])  # fmt: skip
            if world.distributed:  # the local token mean as a share of the minibatch's
                v_loss = v_loss * (mask[rows].sum() / minibatch_counts["num_tokens"])
            optimizer_step(self, self.critic, self.critic_opt, v_loss)

        metrics = {"score": scores.mean()}
        if ref_logp is not None:  # KL control, on the KL of this rollout (beta = 0 stays 0)
            metrics["kl"] = sequence_kl(logp, ref_logp, mask).mean()
        metrics |= {
            "kl_coef": self.kl.value,
            "loss": loss.detach(),
            "value_loss": v_loss.detach(),
            "clip_fraction": stats["clip_fraction"],
            "approx_kl": stats["approx_kl"],
            "entropy": stats["entropy"],
            "response_length": mask.sum(1).float().mean(),
            "value_mean": masked_mean(values, mask),
        }
        if world.distributed:  # token means: the last minibatch's, value_mean the batch's
            last_tokens = mask[minibatches[-1]].sum()
            weights = dict.fromkeys(("clip_fraction", "approx_kl", "entropy"), last_tokens) | {"value_mean": mask.sum()}
            metrics = global_metrics(metrics, weights, summed=("loss", "value_loss"))
        if ref_logp is not None:
            self.kl.update(metrics["kl"], n * world.size)
        return metrics

    batch_size = property(lambda self: self.cfg.batch_size)  # prompts a step draws, in the whole job

    def checkpointed(self) -> dict:
        """What a run's checkpoint holds besides the RNGs (``fastrl.rlhf.run``): objects with
        ``state_dict``/``load_state_dict``."""
        if self.sharded:  # gathered to rank 0, as one process holds them
            return {"policy": FullState(self.policy), "critic": FullState(self.critic),
                    "policy_optimizer": FullState(self.policy, self.policy_opt),
                    "critic_optimizer": FullState(self.critic, self.critic_opt), "kl_controller": self.kl}
        return {"policy": self.policy, "critic": self.critic, "policy_optimizer": self.policy_opt,
                "critic_optimizer": self.critic_opt, "kl_controller": self.kl}
