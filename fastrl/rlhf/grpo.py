"""GRPO: group relative policy optimization (Shao et al. 2024, DeepSeekMath).

Each step:
  rollout     G responses to each of a batch of prompts; reward-model scores; old and reference
              log-probs of every response token (the old ones from the update's own forward when
              epochs = num_minibatches = 1, no reference pass when kl_coef = 0)
  advantages  no critic; by ``advantage_estimator`` (``fastrl.rlhf.advantages``):
              grpo      A = (s - mean_group) / (std_group + eps) (or s - mean_group without scaling)
              dr_grpo   A = s - mean_group (Dr. GRPO; its loss: normalize="constant")
              rloo      A = s - mean of the group's other responses
              these three the same for every token of the response;
              reinforce_pp  per-token returns of the score with the k1 KL to the reference folded
                            into the token rewards (-kl_coef * KL_t), whitened over the batch;
                            the loss then has no KL term of its own
              reinforce_pp_baseline  the same, the group mean first taken off each score
  update      fused clipped PPO loss with the k3 KL to the reference inside the loss
              (``fastrl.ops.ppo_loss_from_hidden``), normalized as ``normalize`` says

Everything stays on the device: ``step`` returns detached scalar tensors.

Under torchrun (docs/distributed.md) ``prompts_per_step`` counts the whole job: each rank samples
the groups of its share of the prompts (groups stay whole on one rank), the loss is normalized by
the job's token and sequence counts and the gradients are averaged, so the update is the one a
single process would make on the whole batch; metrics are those of the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastrl import distributed
from fastrl.nn.gpt import GPT, Generation, generate
from fastrl.nn.hf import as_causal_lm
from fastrl.ops import NORMALIZATIONS, ppo_loss_from_hidden
from fastrl.rlhf.advantages import (
    group_advantages,
    overlong_penalty,
    reinforce_pp_advantages,
    rloo_advantages,
)
from fastrl.rlhf.config import PolicyTrainingConfig
from fastrl.rlhf.reward_model import RewardModel
from fastrl.rlhf.rewards import RewardFunction, make_scorer
from fastrl.rlhf.rollout import (
    TrainsOnPrompts,
    concat_generations,
    frozen_copy,
    global_counts,
    global_metrics,
    minibatch_rows,
    optimizer_step,
    response_hidden,
    rollout_logprobs,
    select_rows,
    sequence_kl,
)
from fastrl.rlhf.sharding import FullState, gathered
from fastrl.rlhf.tokenizer import Tokenizer, as_tokenizer, check_vocab
from fastrl.utils.config import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    ConfigError,
    Range,
)

__all__ = ["GRPOConfig", "GRPOTrainer", "group_advantages", "ADVANTAGE_ESTIMATORS"]

ADVANTAGE_ESTIMATORS = ("grpo", "dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline")


@dataclass
class GRPOConfig(PolicyTrainingConfig):
    """GRPO settings (and the critic-free estimators'); checked at construction and when a
    trainer starts. The sampling, optimizer and loss fields are PolicyTrainingConfig's."""

    learning_rate: float = 5e-4
    prompts_per_step: int = 16
    """Prompts per step; each gets ``group_size`` responses."""
    group_size: int = 8
    """G: responses sampled per prompt."""
    clip_high: float | None = None
    """Upper ratio clip epsilon (None: same as ``clip_low``)."""
    kl_coef: float = 0.05
    """beta: weight of the k3 KL to the reference in the loss (REINFORCE++: of the k1 KL in the
    token rewards); 0 skips the reference pass."""
    kl_ratio_weighted: bool = False
    """Multiply the loss's KL term by the importance ratio (TRL's use_bias_correction_kl)."""
    advantage_estimator: str = "grpo"
    """Critic-free advantages: grpo, dr_grpo (no std), rloo (leave-one-out baseline),
    reinforce_pp (token returns with the KL in the reward, whitened over the batch) or
    reinforce_pp_baseline (the same minus the group mean score)."""
    scale_rewards: bool = True
    """grpo only: divide group-centred scores by the group's std (False: only centre them)."""
    dynamic_sampling: bool = False
    """DAPO: drop the groups whose scores are all equal (no advantage to learn from) and sample
    groups for further prompts until the batch is full again (``train`` draws them from its prompts;
    ``step`` resamples the ones it was given)."""
    max_sampling_rounds: int = 3
    """Dynamic sampling: most rollouts per step; a batch still short after them is filled up with
    the dropped groups."""
    overlong_buffer: int = 0
    """DAPO's overlong soft penalty: responses longer than max_new_tokens - overlong_buffer tokens
    lose up to overlong_penalty, linearly, reached at max_new_tokens (0: no penalty)."""
    overlong_penalty: float = 1.0
    """The overlong soft penalty of a response of max_new_tokens tokens."""
    normalize: str = "seq_mean_token_mean"
    """Loss aggregation: token_mean, seq_mean_token_mean, seq_mean_token_sum or constant
    (divides by max_new_tokens)."""

    field_rules = {
        "prompts_per_step": AT_LEAST_ONE,
        "group_size": Range(2),  # a group of one has no spread to compare against
        "clip_high": NON_NEGATIVE, "kl_coef": NON_NEGATIVE, "normalize": NORMALIZATIONS,
        "advantage_estimator": ADVANTAGE_ESTIMATORS, "max_sampling_rounds": AT_LEAST_ONE,
        "overlong_buffer": NON_NEGATIVE, "overlong_penalty": NON_NEGATIVE,
    }

    def check(self) -> None:
        if self.overlong_buffer > self.max_new_tokens:
            raise ConfigError(f"GRPOConfig.overlong_buffer must be at most max_new_tokens = {self.max_new_tokens}, "
                              f"got {self.overlong_buffer}", "overlong_buffer")


class GRPOTrainer(TrainsOnPrompts):
    """GRPO on ``policy`` (a :class:`GPT` or ``fastrl.nn.hf.HFCausalLM``), trained in place
    against ``reward_model``: a :class:`RewardModel` (or
    :class:`fastrl.rlhf.reward_model.HFRewardModel`), or reward functions
    ``(prompts, completions) -> list[float]`` (one or a list, summed with ``reward_weights``; see
    :mod:`fastrl.rlhf.rewards`). The reference is a frozen copy of the policy at construction."""

    def __init__(self, policy: GPT, reward_model: RewardModel | RewardFunction | list[RewardFunction],
                 tokenizer: Tokenizer, cfg: GRPOConfig, reward_weights: list[float] | None = None):  # fmt: skip
        GRPOConfig.checked("cfg", cfg)
        policy, tokenizer = as_causal_lm(policy, "policy"), as_tokenizer(tokenizer)  # transformers objects wrapped
        check_vocab(tokenizer, policy.cfg.vocab_size, "policy")
        self.score = make_scorer(reward_model, tokenizer, reward_weights)
        self.cfg, self.tokenizer = cfg, tokenizer
        self.policy, self.reward_model = policy, reward_model
        self.reference = frozen_copy(policy)
        self.join_job(cfg, "prompts_per_step", policy, self.reference)
        self.opt = torch.optim.AdamW(policy.parameters(), lr=cfg.learning_rate)

    def sample(self, prompt_ids, prompt_mask, reward_kwargs=None) -> tuple[Generation, torch.Tensor]:
        """``G`` responses to each prompt ``[B, P]`` (each group contiguous) and their scores
        ``[B * G]``, the overlong penalty included; ``reward_kwargs``: the prompts' dataset columns
        (one value per prompt) for the reward functions."""
        cfg = self.cfg
        with gathered(self.policy):  # sharded: ranks may stop sampling after different numbers of tokens
            gen = generate(self.policy, prompt_ids.repeat_interleave(cfg.group_size, 0),
                           prompt_mask.repeat_interleave(cfg.group_size, 0),
                           max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                           stop_token=self.tokenizer.eos_id, pad_token=self.tokenizer.pad_id,
                           generator=self.generator)  # fmt: skip
        with torch.no_grad():
            scores = self.score(gen, reward_kwargs)
        lengths = gen.response_mask.sum(1)
        return gen, scores + overlong_penalty(lengths, cfg.max_new_tokens, cfg.overlong_buffer, cfg.overlong_penalty)

    def dynamic_sample(self, gen, scores, more_prompts) -> tuple[Generation, torch.Tensor, dict]:
        """DAPO's dynamic sampling: keeps the groups whose scores are not all equal, sampling
        ``more_prompts()`` until they fill the batch (at most ``max_sampling_rounds`` rollouts in
        all); a batch still short is filled up with dropped groups, in the order sampled."""
        cfg, g = self.cfg, self.cfg.group_size
        groups_wanted = gen.ids.shape[0] // g
        kept, dropped, rounds = [], [], 1
        while True:
            spread = (scores.view(-1, g) != scores.view(-1, g)[:, :1]).any(1).repeat_interleave(g)
            kept.append((select_rows(gen, spread), scores[spread]))
            dropped.append((select_rows(gen, ~spread), scores[~spread]))
            n_kept = sum(len(s) for _, s in kept) // g  # a host sync: the loop needs the count
            if n_kept >= groups_wanted or rounds == cfg.max_sampling_rounds:
                break
            gen, scores = self.sample(*more_prompts())
            rounds += 1
        parts = [p for p in kept + dropped if len(p[1])]
        gen = concat_generations([p[0] for p in parts], self.tokenizer.pad_id)
        rows = torch.arange(groups_wanted * g, device=self.device)  # the first groups_wanted groups
        stats = {"sampling_rounds": torch.tensor(float(rounds), device=self.device),
                 "groups_with_spread": torch.tensor(min(n_kept, groups_wanted) / groups_wanted, device=self.device)}
        return select_rows(gen, rows), torch.cat([p[1] for p in parts])[rows], stats

    def step(self, prompt_ids, prompt_mask, more_prompts=None,
             reward_kwargs=None) -> tuple[dict[str, torch.Tensor], Generation]:  # fmt: skip
        """One rollout + update on prompts ``[B, P]``; samples ``B * G`` responses (each
        prompt's group contiguous). ``reward_kwargs``: the prompts' dataset columns (one value per
        prompt) for the reward functions. With ``dynamic_sampling``, ``more_prompts()`` gives further
        prompts ``(ids, mask)`` or ``(ids, mask, reward_kwargs)`` (default: these again). Under
        torchrun the prompts are this rank's share. Returns detached scalar metrics and the generation trained on."""
        gen, scores = self.sample(prompt_ids, prompt_mask, reward_kwargs)
        sampling = {}
        if self.cfg.dynamic_sampling:
            more_prompts = more_prompts or (lambda: (prompt_ids, prompt_mask, reward_kwargs))
            gen, scores, sampling = self.dynamic_sample(gen, scores, more_prompts)
            if self.world.distributed:  # the job's means
                sampling = global_metrics(sampling, {}, summed=())
        return self.update(gen, scores) | sampling, gen

    def update(self, gen: Generation, scores: torch.Tensor) -> dict[str, torch.Tensor]:
        """The update on sampled responses ``gen`` (``[B * G, P + N]``, groups contiguous) and their
        scores ``[B * G]``: log-probs, advantages, then ``epochs`` passes of ``num_minibatches``
        optimizer steps. Returns detached scalar metrics (of the whole job under torchrun)."""
        cfg, world = self.cfg, self.world
        mask = gen.response_mask  # [B*G, N]
        minibatches = minibatch_rows(self, gen.ids.shape[0])
        # hidden: the next minibatch's forward, when the rollout already made it; kl_coef = 0: the
        # reference has no part in the loss, so no pass over it
        hidden, logp, ref_logp = rollout_logprobs(self, gen, minibatches, with_reference=bool(cfg.kl_coef))

        advantages = self.advantages(scores, logp, ref_logp, mask)
        # REINFORCE++ has the KL in its rewards already, not in the loss
        in_reward = cfg.advantage_estimator.startswith("reinforce_pp")
        loss_kl_coef, loss_ref_logp = (0.0, None) if in_reward else (cfg.kl_coef, ref_logp)
        counts = global_counts(mask, minibatches, cfg.normalize) if world.distributed else [{}] * len(minibatches)

        # update
        for rows, minibatch_counts in zip(minibatches, counts):
            if hidden is None:
                hidden = response_hidden(self.policy, gen, rows)
            # read after the forward: under FSDP the gathered weight (the module holds its shard otherwise)
            weight = self.policy.lm_head.weight
            loss, stats = ppo_loss_from_hidden(
                hidden, weight, gen.response[rows], logp[rows], advantages[rows], mask=mask[rows],
                ref_logprobs=None if loss_ref_logp is None else loss_ref_logp[rows],
                clip_low=cfg.clip_low, clip_high=cfg.clip_high, kl_coef=loss_kl_coef,
                kl_estimator="k3", temperature=cfg.temperature, normalize=cfg.normalize,
                max_len=cfg.max_new_tokens, importance_level=cfg.importance_level, policy_loss=cfg.policy_loss,
                kl_ratio_weighted=cfg.kl_ratio_weighted, **minibatch_counts)  # fmt: skip
            optimizer_step(self, self.policy, self.opt, loss)
            hidden = None

        metrics = {"score": scores.mean()}
        if ref_logp is not None:  # kl_coef = 0 skips the reference pass, and so these
            metrics["kl"] = sequence_kl(logp, ref_logp, mask).mean()
            if loss_ref_logp is not None:
                metrics["kl_ref_k3"] = stats["kl_ref"]
        metrics |= {
            "loss": loss.detach(),
            "clip_fraction": stats["clip_fraction"],
            "approx_kl": stats["approx_kl"],
            "entropy": stats["entropy"],
            "response_length": mask.sum(1).float().mean(),
        }
        if world.distributed:  # token means: the last minibatch's; the others of every response
            last_tokens = mask[minibatches[-1]].sum()
            return global_metrics(metrics, dict.fromkeys(("clip_fraction", "approx_kl", "entropy", "kl_ref_k3"),
                                                         last_tokens))  # fmt: skip
        return metrics

    def advantages(self, scores, logp, ref_logp, mask) -> torch.Tensor:
        """Token advantages ``[B * G, N]`` by ``cfg.advantage_estimator`` from the scores
        ``[B * G]`` (groups contiguous), the rollout's log-probs and the reference's ``[B * G, N]``
        (None when kl_coef = 0) and the response mask."""
        cfg, estimator = self.cfg, self.cfg.advantage_estimator
        if estimator.startswith("reinforce_pp"):
            kl = None if ref_logp is None else logp - ref_logp  # k1, an unbiased sample of the KL
            group_size = cfg.group_size if estimator == "reinforce_pp_baseline" else None
            # whitened over the job's batch, every rank's tokens
            return reinforce_pp_advantages(scores, mask, kl, cfg.kl_coef, group_size=group_size,
                                           whiten_over=distributed.whiten if self.world.distributed else None)
        if estimator == "rloo":
            per_response = rloo_advantages(scores, cfg.group_size)
        else:
            per_response = group_advantages(scores, cfg.group_size, cfg.scale_rewards and estimator == "grpo")
        return per_response[:, None].expand(mask.shape)

    batch_size = property(lambda self: self.cfg.prompts_per_step)  # prompts a step draws, in the whole job

    def checkpointed(self) -> dict:
        """What a run's checkpoint holds besides the RNGs (``fastrl.rlhf.run``): objects with
        ``state_dict``/``load_state_dict``."""
        if self.sharded:  # gathered to rank 0, as one process holds them
            return {"policy": FullState(self.policy), "optimizer": FullState(self.policy, self.opt)}
        return {"policy": self.policy, "optimizer": self.opt}
