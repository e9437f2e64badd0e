"""A Hugging Face ``transformers`` causal LM behind the interface fastrl's sampler and RLHF
trainers use (optional extra ``rlhf``): ``cfg.vocab_size``, ``cfg.block_size``,
``hidden(ids, mask)``, ``lm_head`` and ``trunk(ids, mask, past) -> (hidden, cache)``.

Positions come from the mask exactly as in :mod:`fastrl.nn.gpt` (real tokens only), so padded
prompts and KV-cache steps see the same positions as an unpadded sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastrl.nn.gpt import positions_from_mask

__all__ = ["HFCausalLM"]


@dataclass
class HFConfigView:
    vocab_size: int
    """Rows of the model's input embedding."""
    block_size: int
    """The model's context (max_position_embeddings)."""


class HFCausalLM(nn.Module):
    """Wraps a ``transformers`` causal LM instance, or loads one from a local directory
    (``HFCausalLM.from_pretrained(path)``, no download)."""

    def __init__(self, model):
        super().__init__()
        # eval mode: no dropout, so rollout and update compute the same log-probs (PPO ratios)
        self.hf = model.eval()
        config = model.config
        context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if context is None:
            raise ValueError("the transformers model's config names no context length")
        self.cfg = HFConfigView(model.get_input_embeddings().num_embeddings, int(context))
        self.lm_head = model.get_output_embeddings()

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> HFCausalLM:
        from transformers import AutoModelForCausalLM

        return cls(AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kwargs))

    def trunk(self, ids, mask, past=None):
        """ids [B, T] are the last T columns of ``mask [B, S]``; ``past`` caches the first S-T.
        Returns the final hidden states [B, T, C] and the cache."""
        n_real = mask.sum(1)
        if bool((n_real > self.cfg.block_size).any()):
            raise ValueError(
                f"sequence {int(n_real.argmax())} has {int(n_real.max())} tokens, more than the "
                f"model's context of {self.cfg.block_size}"
            )
        out = self.hf(input_ids=ids, attention_mask=mask.long(), past_key_values=past,
                      position_ids=positions_from_mask(mask)[:, -ids.shape[1] :],
                      use_cache=True, output_hidden_states=True)  # fmt: skip
        return out.hidden_states[-1], out.past_key_values

    def hidden(self, ids, mask=None):
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask
        return self.trunk(ids, mask)[0]

    def forward(self, ids, mask=None):
        return self.lm_head(self.hidden(ids, mask))
