"""FSDP2 for ``transformers`` models under torchrun: the RLHF trainers' ``fsdp=True``
(docs/distributed.md, "FSDP2").

:func:`shard` applies ``torch.distributed.fsdp.fully_shard`` to each transformer block of a
wrapped model (:class:`fastrl.nn.hf.HFCausalLM`, :class:`fastrl.nn.hf.HFScalar`) and then to the
wrapper, the root, whose group holds the embeddings, the final norm and the heads. Each rank then
keeps 1/W of every parameter; a forward all-gathers a block's parameters just before it runs and
frees them after, and the backward reduce-scatters the gradients, averaged over the ranks (as
``fastrl.distributed.average_gradients``, so a trainer's loss scaling is the same under both).
Optimizers are built after sharding, over the sharded parameters; a frozen model (the reference)
is sharded the same way and never gets one.

The root's parameters stay gathered from its forward to the backward (FSDP's default for the
root): the trainers read ``lm_head.weight`` after the forward, for the fused loss, and get the
gathered tensor, whose gradient FSDP then reduce-scatters.

fastrl's own :class:`fastrl.nn.gpt.GPT` is not sharded: its tied LM head lives in the trunk
module its methods call directly, and a small model is better served by the flat gradient
all-reduce (``fastrl.distributed.average_gradients``).
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from typing import TYPE_CHECKING

import torch
from torch import nn

from fastrl.nn.gpt import GPT, ScalarGPT
from fastrl.utils.config import ConfigError

if TYPE_CHECKING:
    from torch.distributed.fsdp import MixedPrecisionPolicy

# torch.distributed.fsdp and .checkpoint are imported where used: the latter takes seconds to import,
# and every RLHF trainer imports this module

__all__ = ["transformer_blocks", "shard", "shard_models", "is_sharded", "gathered", "full_state_dict",
           "load_full_state_dict", "FullState"]

# the wrappers' methods that run the model besides forward (HFCausalLM.trunk: hidden states and the
# KV cache): FSDP must gather the root's parameters around them too
_FORWARD_METHODS = ("trunk",)
# each sharded model's reshard_after_forward, restored after gathered()
_RESHARD_AFTER_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks of ``model`` (a fastrl wrapper of a ``transformers`` model, or the
    ``transformers`` model itself), in order: the modules of the classes the model names in
    ``_no_split_modules`` (transformers' own list of the blocks a model is split at: GPT2Block,
    LlamaDecoderLayer, ...), else those of its largest ``nn.ModuleList`` of one class (GPT-2's
    ``transformer.h``, Llama's ``model.layers``). ValueError naming the model when it has none."""
    hf = getattr(model, "hf", model)
    names = set(getattr(hf, "_no_split_modules", None) or ())
    blocks = [m for m in hf.modules() if type(m).__name__ in names]
    if not blocks:
        lists = [m for m in hf.modules() if isinstance(m, nn.ModuleList) and len(m)
                 and len({type(b) for b in m}) == 1]  # fmt: skip
        if lists:
            blocks = list(max(lists, key=lambda m: sum(p.numel() for p in m.parameters())))
    if not blocks:
        raise ValueError(f"{type(hf).__name__} has no transformer blocks to shard: no module named in its "
                         "_no_split_modules and no nn.ModuleList of blocks of one class")
    return blocks


def shard(model: nn.Module, *, mixed_precision: MixedPrecisionPolicy | None = None,
          reshard_after_forward: bool = True) -> nn.Module:  # fmt: skip
    """Shard ``model`` in place over the process group (FSDP2): each transformer block, then the
    whole model (the root). Returns it. Build its optimizer afterwards, over ``model.parameters()``
    (then DTensor shards). ``mixed_precision``: FSDP's policy (e.g. bf16 parameters in the forward,
    fp32 gradient reduction); ``reshard_after_forward=False`` keeps the blocks gathered from the
    forward to the backward (more memory, fewer all-gathers).

    ValueError for fastrl's own GPT (see the module's docstring) and for a model without blocks."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    if isinstance(model, (GPT, ScalarGPT)):
        raise ValueError(f"{type(model).__name__}: fsdp shards transformers models (fastrl.nn.hf); fastrl's "
                         "own GPT trains data-parallel, with its gradients averaged over the ranks")
    if is_sharded(model):
        raise ValueError(f"{type(model).__name__} is sharded already")
    blocks = transformer_blocks(model)
    options = {} if mixed_precision is None else {"mp_policy": mixed_precision}
    for block in blocks:
        fully_shard(block, reshard_after_forward=reshard_after_forward, **options)
    fully_shard(model, **options)
    # FSDP warns on every forward whose output is a view (transformers' hidden states are): an
    # in-place op on it would skip the backward's all-gather. fastrl never writes to them in place.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDP", category=UserWarning)
    for name in _FORWARD_METHODS:
        method = getattr(model, name, None)
        if callable(method) and not isinstance(method, nn.Module):
            register_fsdp_forward_method(model, name)
    _RESHARD_AFTER_FORWARD[model] = reshard_after_forward
    return model


def shard_models(config_name: str, fsdp: bool, world, *models: nn.Module) -> bool:
    """A trainer's ``fsdp`` option: ``models`` sharded (:func:`shard`) when ``fsdp`` is on and the
    job (``world``) has more than one process; returns whether they were. A model :func:`shard`
    refuses raises a ConfigError naming ``<config_name>.fsdp``, on one process too."""
    if not fsdp:
        return False
    for model in models:
        if isinstance(model, (GPT, ScalarGPT)):
            raise ConfigError(f"{config_name}.fsdp: shards transformers models (fastrl.nn.hf), not fastrl's own "
                              f"{type(model).__name__}, which trains data-parallel (fsdp=False)", "fsdp")
        try:
            transformer_blocks(model)
        except ValueError as e:
            raise ConfigError(f"{config_name}.fsdp: {e}", "fsdp") from None
    if world.distributed:
        for model in models:
            shard(model)
    return world.distributed


def is_sharded(model) -> bool:
    """Whether ``model`` was sharded with FSDP2 (by :func:`shard`)."""
    if not torch.distributed.is_available():  # a torch built without it shards nothing
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _fsdp_modules(model: nn.Module) -> list:
    return [m for m in model.modules() if is_sharded(m)]


@contextlib.contextmanager
def gathered(*models):
    """Every parameter of the sharded ``models`` gathered on every rank for the block (one
    all-gather per block on entry), with no collective inside: for sampling, where a rank's
    batch may stop earlier than another's, so the ranks run different numbers of forwards.
    Resharded on exit. Models that are not sharded pass through."""
    sharded = [m for m in models if is_sharded(m)]
    for model in sharded:
        for module in _fsdp_modules(model):
            module.set_reshard_after_forward(False, recurse=False)
            module.unshard()
    try:
        yield
    finally:
        for model in sharded:
            for module in _fsdp_modules(model):
                # the root keeps its parameters gathered after a forward (FSDP's default for it)
                module.set_reshard_after_forward(module is not model and _RESHARD_AFTER_FORWARD.get(model, True),
                                                 recurse=False)  # fmt: skip
                module.reshard()


def _full_options():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors, on rank 0's CPU


def full_state_dict(model: nn.Module) -> dict:
    """``model.state_dict()``, with a sharded model's parameters gathered whole: on CPU on rank 0,
    empty on the other ranks. Collective: every rank calls it."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_options())


def load_full_state_dict(model: nn.Module, state: dict) -> None:
    """``model.load_state_dict(state)`` of a whole (unsharded) state, each rank keeping its shard
    of a sharded model. Every rank calls it with the whole state."""
    if not is_sharded(model):
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:  # load_state_dict's strict check
        raise RuntimeError(f"the state does not fit {type(model).__name__}: missing keys {missing[:5]}, "
                           f"unexpected keys {unexpected[:5]}")
    # one key per tensor: the other names of a tied weight (HFCausalLM's lm_head.weight is the
    # embedding's) would be loaded as plain tensors into DTensors
    names = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
    set_model_state_dict(model, {k: v for k, v in state.items() if k in names},
                         options=StateDictOptions(full_state_dict=True, strict=False))


class FullState:
    """A sharded model (with ``optimizer``: its optimizer) as a checkpoint sees it: ``state_dict()``
    gathers the full state to rank 0, in the form the unsharded model (or an optimizer built over
    its ``parameters()``) has on one process, so that a run saved on W ranks loads on one;
    ``load_state_dict`` takes that whole state on every rank and keeps each rank's shard.
    Collective: every rank calls them."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None):
        self.model, self.optimizer = model, optimizer

    def state_dict(self) -> dict:
        if self.optimizer is None:
            return full_state_dict(self.model)
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        state = get_optimizer_state_dict(self.model, self.optimizer, options=_full_options())
        if not state:  # not rank 0
            return state
        # keyed by parameter name; a plain optimizer's state is keyed by the parameter's position
        # over its param_groups, in order
        index = {name: i for i, name in enumerate(n for group in state["param_groups"] for n in group["params"])}
        return {"state": {index[name]: s for name, s in state["state"].items()},
                "param_groups": [g | {"params": [index[n] for n in g["params"]]} for g in state["param_groups"]]}

    def load_state_dict(self, state: dict) -> None:
        if self.optimizer is None:
            load_full_state_dict(self.model, state)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        # positions back to parameter names, in the optimizer's order
        names = {p: name for name, p in self.model.named_parameters()}
        order = [names[p] for group in self.optimizer.param_groups for p in group["params"]]
        state = {"state": {order[i]: s for i, s in state["state"].items()},
                 "param_groups": [g | {"params": [order[i] for i in g["params"]]} for g in state["param_groups"]]}
        set_optimizer_state_dict(self.model, self.optimizer, state, options=StateDictOptions(full_state_dict=True))
