"""Hugging Face ``transformers`` models behind the interfaces fastrl's sampler and RLHF
trainers use (optional extra ``rlhf``):

- :class:`HFCausalLM`, a causal LM as the policy: ``cfg.vocab_size``, ``cfg.block_size``,
  ``hidden(ids, mask)``, ``lm_head`` and ``trunk(ids, mask, past) -> (hidden, cache)``;
- :class:`HFScalar`, a decoder-only sequence classifier with one label, as a scalar head (the
  interface of :class:`fastrl.nn.gpt.ScalarGPT`): ``forward(ids, mask)`` gives a value per token
  ``[B, S]`` (a PPO critic), ``score(ids, mask)`` the value at each row's last real token ``[B]``
  (a reward model, see :class:`fastrl.rlhf.reward_model.HFRewardModel`).

Positions come from the mask exactly as in :mod:`fastrl.nn.gpt` (real tokens only), so padded
prompts and KV-cache steps see the same positions as an unpadded sequence.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass

import torch
from torch import nn

from fastrl.nn.gpt import CausalLM, check_inputs, last_token_index, positions_from_mask

__all__ = ["HFCausalLM", "HFScalar", "as_causal_lm", "as_scalar", "is_transformers"]


@dataclass
class HFConfigView:
    vocab_size: int
    """Rows of the model's input embedding."""
    block_size: int
    """The model's context (max_position_embeddings)."""


def _config_view(model) -> HFConfigView:
    config = model.config
    context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if context is None:
        raise ValueError("the transformers model's config names no context length")
    return HFConfigView(model.get_input_embeddings().num_embeddings, int(context))


def _cache_keyword(model) -> str:
    """The name under which ``model.forward`` takes (and its output returns) the KV cache:
    ``cache`` from transformers 5.x on, where ``past_key_values`` still works but warns that it
    is deprecated on every call; ``past_key_values`` before (4.x)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _one_row_if_empty(ids, mask):
    """``ids, mask`` with one row of the first token in place of an empty batch (the caller keeps
    ``[:0]`` of the output): transformers models refuse a batch of 0 rows (GPT-2 views its mask with
    -1), and a rank's share of a minibatch may be empty, yet the rank runs the forward and backward
    with the others (FSDP's collectives; the gradient is then 0 for every parameter, not None)."""
    if ids.shape[0]:
        return ids, mask
    return ids.new_zeros(1, ids.shape[1]), mask.new_ones(1, mask.shape[1])


class HFCausalLM(CausalLM):
    """Wraps a ``transformers`` causal LM instance, or loads one from a local directory
    (``HFCausalLM.from_pretrained(path)``, no download)."""

    def __init__(self, model):
        super().__init__()
        # eval mode: no dropout, so rollout and update compute the same log-probs (PPO ratios)
        self.hf = model.eval()
        self.cfg = _config_view(model)
        self.lm_head = model.get_output_embeddings()
        self._cache_keyword = _cache_keyword(model.base_model)

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> HFCausalLM:
        from transformers import AutoModelForCausalLM

        return cls(AutoModelForCausalLM.from_pretrained(path, local_files_only=True, **kwargs))

    def trunk(self, ids, mask, past=None):
        """ids [B, T] are the last T columns of ``mask [B, S]``; ``past`` caches the first S-T.
        Returns the final hidden states [B, T, C] and the cache; checked only without ``past``
        (as fastrl's GPT: one host sync per ``generate``, not one per token)."""
        rows = ids.shape[0]
        if past is None:
            check_inputs(ids, mask, self.cfg)
            ids, mask = _one_row_if_empty(ids, mask)
        # the base model, not the LM: the trainers apply the head themselves (fused into the loss),
        # and the full [B, T, V] logits of every forward would be computed only to be thrown away
        out = self.hf.base_model(input_ids=ids, attention_mask=mask.long(), **{self._cache_keyword: past},
                                 position_ids=positions_from_mask(mask)[:, -ids.shape[1] :],
                                 use_cache=True)  # fmt: skip
        return out.last_hidden_state[:rows], getattr(out, self._cache_keyword)

def is_transformers(obj, kind: str) -> bool:
    """Whether ``obj`` is an instance of ``transformers.<kind>`` (False when transformers was never
    imported: nothing can be an instance of its classes then)."""
    module = sys.modules.get("transformers")
    return module is not None and isinstance(obj, getattr(module, kind))


def as_causal_lm(model, name: str = "policy"):
    """``model`` itself when it has the policy interface (a fastrl GPT, an :class:`HFCausalLM`); a
    ``transformers`` causal LM (``AutoModelForCausalLM``) wrapped in :class:`HFCausalLM`; anything
    else a TypeError naming the argument."""
    if is_transformers(model, "PreTrainedModel"):
        if model.get_output_embeddings() is None:
            raise TypeError(f"{name}: a {type(model).__name__} has no LM head; pass a causal LM "
                            "(AutoModelForCausalLM), or use a classifier as a reward model or critic")
        return HFCausalLM(model)
    if not (isinstance(model, nn.Module) and hasattr(model, "cfg") and hasattr(model, "lm_head")):
        raise TypeError(f"{name} must be a fastrl GPT, a fastrl.nn.hf.HFCausalLM or a transformers causal LM "
                        f"(AutoModelForCausalLM), got {type(model).__name__}")
    return model


def as_scalar(model, name: str = "critic"):
    """``model`` itself, or a ``transformers`` sequence classifier wrapped in :class:`HFScalar`."""
    if is_transformers(model, "PreTrainedModel"):
        try:
            return HFScalar(model)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return model


class HFScalar(nn.Module):
    """Wraps a ``transformers`` decoder-only sequence classifier with ``num_labels == 1`` (GPT-2,
    Llama, Mistral, Qwen2, ...: a base model and a linear ``score`` head on every token), or
    loads one from a local directory (``HFScalar.from_pretrained(path)``, no download).

    The head is read at the last real token as the mask says, for either padding side. The
    model's own pooling is not used: it finds that token by ``config.pad_token_id``, which breaks
    when the pad id is also a real token (a tokenizer that pads with EOS, and responses that end
    in EOS) and refuses batches when the config names no pad id.
    """

    def __init__(self, model):
        super().__init__()
        base, head = model.base_model, getattr(model, "score", None)
        if base is model or not isinstance(head, nn.Linear):
            raise ValueError(
                f"{type(model).__name__} is not a decoder-only sequence classifier with a linear "
                "`score` head on every token (as in GPT2ForSequenceClassification, "
                "LlamaForSequenceClassification, ...)"
            )
        if head.out_features != 1:
            raise ValueError(
                f"the transformers classifier has num_labels={head.out_features}; a scalar reward "
                "or value needs num_labels=1 (pass num_labels=1 to from_pretrained for a fresh "
                "one-output head)"
            )
        # eval mode: no dropout at scoring time (training switches it back with .train())
        self.hf = model.eval()
        self.cfg = _config_view(model)

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> HFScalar:
        from transformers import AutoModelForSequenceClassification

        return cls(AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True, **kwargs))

    def forward(self, ids, mask=None):
        """Value per token ``[B, S]`` of ``ids [B, S]`` (padding columns hold meaningless values)."""
        mask = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask
        check_inputs(ids, mask, self.cfg)
        rows = ids.shape[0]
        ids, mask = _one_row_if_empty(ids, mask)
        out = self.hf.base_model(input_ids=ids, attention_mask=mask.long(),
                                 position_ids=positions_from_mask(mask), use_cache=False)  # fmt: skip
        return self.hf.score(out.last_hidden_state[:rows]).squeeze(-1)

    def score(self, ids, mask):
        """The head at each row's last real token ``[B]`` (any padding side)."""
        return self(ids, mask).gather(1, last_token_index(mask)[:, None]).squeeze(1)
