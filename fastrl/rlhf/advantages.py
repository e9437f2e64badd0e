"""Critic-free advantage estimators for RLHF: each a few lines, each defined by its paper.

Scores are one number per response; a group is the ``group_size`` responses sampled for one
prompt, stored contiguously (``[P * G]``, prompt-major), as GRPOTrainer samples them.

    group_advantages        GRPO (Shao et al. 2024): (s - mean_group) / (std_group + eps);
                            scale=False is Dr. GRPO (Liu et al. 2025): s - mean_group, no std
    rloo_advantages         RLOO (Ahmadian et al. 2024): s minus the mean of the group's others
    reinforce_pp_advantages REINFORCE++ (Hu 2025): per-token returns of the score with the KL
                            penalty folded into the reward, whitened over the (global) batch;
                            baseline=True (REINFORCE++-baseline) first subtracts the group mean
    overlong_penalty        DAPO (Yu et al. 2025): a soft penalty on responses near the length limit
"""

from __future__ import annotations

import torch

from fastrl.utils.stats import whiten

__all__ = ["group_advantages", "rloo_advantages", "reinforce_pp_advantages", "overlong_penalty"]


def _groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D [prompts * group_size], got shape {tuple(scores.shape)}")
    if group_size < 1 or scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of group_size = {group_size}")
    return scores.view(-1, group_size)


def group_advantages(scores: torch.Tensor, group_size: int, scale: bool = True,
                     eps: float = 1e-4) -> torch.Tensor:  # fmt: skip
    """``scores [B * G]`` with each group's G responses contiguous -> advantages ``[B * G]``:
    ``s - mean_group``, divided by ``std_group + eps`` (sample std, N - 1) when ``scale``."""
    groups = _groups(scores, group_size)
    centred = groups - groups.mean(1, keepdim=True)
    if scale:
        centred = centred / (groups.std(1, keepdim=True) + eps)
    return centred.reshape(-1)


def rloo_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO: each response's score minus the mean score of the *other* responses to its prompt,
    ``s_i - (sum_j s_j - s_i) / (G - 1)``, an unbiased baseline (it does not depend on s_i)."""
    if group_size < 2:
        raise ValueError(f"RLOO needs group_size >= 2 (a baseline from the others), got {group_size}")
    groups = _groups(scores, group_size)
    others = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).reshape(-1)


def reinforce_pp_advantages(scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None = None,
                            kl_coef: float = 0.0, gamma: float = 1.0, group_size: int | None = None,
                            whiten_over=None) -> torch.Tensor:  # fmt: skip
    """REINFORCE++ token advantages ``[B, T]``.

    The reward of token t is ``-kl_coef * kl[t]`` plus, on the last valid token, the response's
    score (minus its group's mean when ``group_size`` is given: REINFORCE++-baseline); the return
    ``G_t = r_t + gamma * G_{t+1}`` runs back over the valid tokens (``mask [B, T]``, a prefix of
    each row); advantages are the returns whitened over every valid token of the batch.
    ``whiten_over``: a function ``(x, mask) -> whitened x`` to use instead (e.g. one whose
    statistics are reduced over every process, for a batch split across ranks)."""
    if mask.dim() != 2 or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool [B, T] tensor, got {mask.dtype} {tuple(mask.shape)}")
    if scores.shape != mask.shape[:1]:
        raise ValueError(f"scores must have shape ({mask.shape[0]},) (one per response), got {tuple(scores.shape)}")
    if kl is not None and kl.shape != mask.shape:
        raise ValueError(f"kl must have mask's shape {tuple(mask.shape)}, got {tuple(kl.shape)}")
    if kl is None and kl_coef != 0:
        raise ValueError("kl_coef != 0 needs kl (the per-token KL to the reference)")
    if group_size is not None:
        scores = scores - _groups(scores, group_size).mean(1).repeat_interleave(group_size)
    rewards = torch.zeros(mask.shape, dtype=scores.dtype, device=scores.device)
    if kl_coef != 0:  # padding's kl (garbage, even NaN) must not flow into the returns
        rewards = torch.where(mask, -kl_coef * kl.to(scores.dtype), 0)
    # The score on each row's last valid token (a row without any lands on padding: ignored).
    rewards[torch.arange(len(scores)), (mask.sum(1) - 1).clamp(min=0)] += scores
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(scores)
    for t in reversed(range(mask.shape[1])):  # padding trails the tokens: its rewards are 0
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return (whiten_over or whiten)(returns, mask)


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int, factor: float = 1.0) -> torch.Tensor:
    """DAPO's overlong soft penalty (Yu et al. 2025) per response ``[B]`` of ``lengths [B]``
    tokens: 0 up to ``max_len - buffer`` tokens, then falling linearly to ``-factor`` at
    ``max_len`` (and ``-factor`` beyond): ``factor * min(0, (max_len - buffer - length) / buffer)``,
    floored at ``-factor``. ``buffer = 0``: no penalty."""
    if buffer == 0:
        return torch.zeros(lengths.shape, dtype=torch.float32, device=lengths.device)
    if not 0 < buffer <= max_len:
        raise ValueError(f"buffer must be in [0, max_len = {max_len}], got {buffer}")
    over = (lengths.float() - (max_len - buffer)) / buffer
    return -factor * over.clamp(0, 1)
