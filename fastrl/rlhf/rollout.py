"""Pieces PPO and GRPO share: a frozen reference, per-token log-probs and values of sampled
responses, the KL of each response and the outer loop (masked statistics are in
``fastrl.utils.stats``). A generation is ``[B, P + N]`` (see ``fastrl.nn.gpt``): the
hidden state at column ``P - 1 + t`` predicts response token ``t``."""

from __future__ import annotations

import copy
from numbers import Integral

import torch

from fastrl import distributed
from fastrl.nn.gpt import GPT, Generation, ScalarGPT
from fastrl.ops import token_logprobs
from fastrl.rlhf.data import encode_prompts, prompt_source
from fastrl.rlhf.sharding import shard_models
from fastrl.utils.config import ConfigError

__all__ = ["frozen_copy", "response_hidden", "response_logprobs", "response_values", "sequence_kl",
           "single_pass", "logprobs_of_hidden", "rollout_logprobs", "optimizer_step", "select_rows",
           "concat_generations", "prompt_batches", "step_on",
           "train_on_prompts", "minibatch_rows", "global_counts", "global_metrics"]  # fmt: skip


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy that never trains: the reference policy."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


def response_hidden(model: GPT, gen: Generation, rows=slice(None)) -> torch.Tensor:
    """Hidden states ``[b, N, C]`` that predict the response tokens of ``gen.ids[rows]``."""
    hidden = model.hidden(gen.ids[rows], gen.mask[rows])
    return hidden[:, gen.prompt_len - 1 : -1]


def response_logprobs(model: GPT, gen: Generation, temperature: float) -> torch.Tensor:
    """Log-probs ``[B, N]`` of the response tokens under ``model`` (0 at padding), from the
    hidden states and the LM head without building a full log-softmax."""
    logp, _ = token_logprobs(response_hidden(model, gen), gen.response, weight=model.lm_head.weight,
                             temperature=temperature, mask=gen.response_mask)  # fmt: skip
    return logp


def single_pass(cfg) -> bool:
    """True when the update is one pass over one minibatch (``epochs = num_minibatches = 1``): the
    old policy is then the policy being updated, the PPO ratio is exactly 1, and the old log-probs
    are the update forward's own, detached (:func:`logprobs_of_hidden`), not a separate no-grad
    pass over the batch (TRL skips it the same way)."""
    return cfg.epochs == 1 and cfg.num_minibatches == 1


def logprobs_of_hidden(model: GPT, hidden: torch.Tensor, gen: Generation, rows: torch.Tensor,
                       temperature: float) -> torch.Tensor:  # fmt: skip
    """Detached log-probs ``[B, N]`` of every response from ``hidden = response_hidden(model, gen,
    rows)`` with ``rows`` a permutation of all the rows (0 at padding)."""
    with torch.no_grad():
        logp, _ = token_logprobs(hidden.detach(), gen.response[rows], weight=model.lm_head.weight,
                                 temperature=temperature, mask=gen.response_mask[rows])  # fmt: skip
    return logp.new_empty(logp.shape).index_copy_(0, rows, logp)


def rollout_logprobs(trainer, gen: Generation, minibatches: list[torch.Tensor], with_reference: bool):
    """``(hidden, logp, ref_logp)``: the detached log-probs ``[B, N]`` of the sampled responses
    under the policy and, when ``with_reference``, under the reference (else None). On a single
    pass the first minibatch's forward makes them and is returned as ``hidden`` for the update to
    reuse; otherwise ``hidden`` is None and ``logp`` comes from a no-grad pass."""
    policy, temperature = trainer.policy, trainer.cfg.temperature
    hidden = None
    if single_pass(trainer.cfg):
        hidden = response_hidden(policy, gen, minibatches[0])
        logp = logprobs_of_hidden(policy, hidden, gen, minibatches[0], temperature)
    with torch.no_grad():
        if hidden is None:
            logp = response_logprobs(policy, gen, temperature)
        ref_logp = response_logprobs(trainer.reference, gen, temperature) if with_reference else None
    return hidden, logp, ref_logp


def optimizer_step(trainer, model: torch.nn.Module, optimizer, loss: torch.Tensor) -> None:
    """One step of ``model`` on ``loss``, this rank's share of the minibatch's loss: scaled by W,
    so that averaging the ranks' gradients (here, or FSDP's reduce-scatter when sharded) gives the
    minibatch's gradient; then clipped to ``cfg.max_grad_norm``."""
    optimizer.zero_grad(set_to_none=True)
    (loss * trainer.world.size).backward()
    if not trainer.sharded:
        distributed.average_gradients(model.parameters())
    torch.nn.utils.clip_grad_norm_(model.parameters(), trainer.cfg.max_grad_norm)
    optimizer.step()


def select_rows(gen: Generation, rows) -> Generation:
    """The generation of ``rows`` only."""
    return Generation(gen.ids[rows], gen.mask[rows], gen.prompt_len)


def concat_generations(gens: list[Generation], pad_id: int) -> Generation:
    """One generation of all the rows of ``gens``: each prompt block padded on the left and each
    response block on the right to the widest (positions come from the mask, so padding is
    harmless wherever it sits)."""
    prompt_len = max(g.prompt_len for g in gens)
    response_len = max(g.ids.shape[1] - g.prompt_len for g in gens)
    ids, mask = [], []
    for g in gens:
        widths = (prompt_len - g.prompt_len, response_len - (g.ids.shape[1] - g.prompt_len))
        ids.append(torch.nn.functional.pad(g.ids, widths, value=pad_id))
        mask.append(torch.nn.functional.pad(g.mask, widths, value=False))
    return Generation(torch.cat(ids), torch.cat(mask), prompt_len)


def response_values(critic: ScalarGPT, gen: Generation, rows=slice(None)) -> torch.Tensor:
    """V(state before response token t) ``[b, N]``."""
    return critic(gen.ids[rows], gen.mask[rows])[:, gen.prompt_len - 1 : -1]


def sequence_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(policy || reference) of each sampled response ``[B]``: the sum over its tokens of
    ``logp - ref_logp`` (unbiased for the sequence KL, since the tokens were drawn from the
    policy)."""
    return torch.where(mask, logp - ref_logp, 0).sum(1)


def prompt_batches(trainer, prompts, batch_size: int):
    """``(draw, more)``: ``draw()`` gives a batch ``(ids, mask, columns)`` of ``batch_size``
    prompts drawn from ``prompts`` (any kind :func:`fastrl.rlhf.data.prompt_source` takes) with
    ``trainer.cpu_generator`` (so its state is the data position), ``columns`` their other dataset
    columns (one value per prompt; empty without them), ``more`` the keyword arguments of
    ``trainer.step`` besides them (:func:`step_on`). A trainer with a ``prompt_shard`` (a range,
    under torchrun) gets only those prompts of each batch: every rank draws the same batch, as one
    process would, and keeps its share."""
    source = prompt_source(prompts, trainer.tokenizer)
    ids, mask = encode_prompts(source.prompts, trainer.tokenizer, trainer.device)  # ids checked against its vocab
    # a prompt too long for the context with a full response fails here, named, not mid-run
    room = trainer.policy.cfg.block_size - trainer.cfg.max_new_tokens
    lengths = mask.sum(1).tolist()
    too_long = next((i for i, n in enumerate(lengths) if n > room), None)
    if too_long is not None:
        raise ValueError(
            f"prompt {too_long} has {lengths[too_long]} tokens; with max_new_tokens="
            f"{trainer.cfg.max_new_tokens} the response could run past the policy's context of "
            f"{trainer.policy.cfg.block_size} (prompts may have at most {max(room, 0)} tokens)"
        )

    def draw():
        rows = torch.randint(0, ids.shape[0], (batch_size,), generator=trainer.cpu_generator)
        shard = getattr(trainer, "prompt_shard", None)
        if shard is not None:
            rows = rows[shard.start:shard.stop]
        picked = rows.tolist()
        return ids[rows], mask[rows], {k: [column[r] for r in picked] for k, column in source.columns.items()}

    # a trainer that resamples (GRPO's dynamic sampling) draws its further prompts from the pool
    more = {"more_prompts": draw} if getattr(trainer.cfg, "dynamic_sampling", False) else {}
    return draw, more


def step_on(trainer, batch, more: dict):
    """``trainer.step`` on a batch ``(ids, mask, columns)`` of :func:`prompt_batches`; the columns
    go to its reward functions (``reward_kwargs``) when there are any."""
    ids, mask, columns = batch
    return trainer.step(ids, mask, **more, **({"reward_kwargs": columns} if columns else {}))


def minibatch_rows(trainer, rows: int) -> list[torch.Tensor]:
    """This rank's rows of each minibatch of an update, ``epochs * num_minibatches`` of them in
    order, for a batch of ``rows`` responses on each rank. Every rank draws the same permutation of
    the job's batch with ``trainer.cpu_generator``, as one process would, and keeps its own rows of
    each minibatch (their number varies from rank to rank; a share may be empty)."""
    cfg, world = trainer.cfg, trainer.world
    first = world.rank * rows  # the job's index of this rank's first response
    out = []
    for _ in range(cfg.epochs):
        order = torch.randperm(rows * world.size, generator=trainer.cpu_generator)
        for chunk in order.chunk(cfg.num_minibatches):
            out.append((chunk[(chunk >= first) & (chunk < first + rows)] - first).to(trainer.device))
    return out


def global_counts(mask: torch.Tensor, minibatches: list[torch.Tensor], normalize: str) -> list[dict[str, float]]:
    """Each minibatch's ``num_tokens`` and ``num_sequences`` over every rank (one all-reduce): the
    normalizers of :func:`fastrl.ops.ppo_loss` that make the ranks' losses sum to the minibatch's.
    The seq_mean modes count the responses with a valid token, "constant" every response."""
    local = torch.stack([torch.stack([mask[rows].sum(), mask[rows].any(1).sum() if normalize != "constant"
                                      else mask.new_tensor(len(rows), dtype=torch.long)]) for rows in minibatches])
    (total,) = distributed.global_sum(local)
    return [{"num_tokens": max(t, 1.0), "num_sequences": max(s, 1.0)} for t, s in total.tolist()]


def global_metrics(metrics: dict[str, torch.Tensor], weights: dict[str, torch.Tensor],
                   summed=("loss",)) -> dict[str, torch.Tensor]:  # fmt: skip
    """The job's metrics from this rank's, in one all-reduce: those in ``summed`` (a rank's share of
    a global quantity) summed, those in ``weights`` (means over this rank's ``weights[k]`` items,
    e.g. tokens) weighted by them, the others (means over as many responses on every rank) averaged."""
    world = distributed.current()
    keys = list(metrics)
    w = [weights[k].to(torch.float64) if k in weights else torch.ones((), dtype=torch.float64) for k in keys]
    totals = distributed.global_sum(*(metrics[k].to(torch.float64) * wk for k, wk in zip(keys, w)), *w)
    out = {}
    for i, k in enumerate(keys):
        value = totals[i] if k in summed else totals[i] / totals[len(keys) + i].clamp(min=1)
        out[k] = value.to(metrics[k].dtype)
    return out if world.distributed else metrics


def check_iterations(iterations, name: str = "iterations") -> None:
    if isinstance(iterations, bool) or not isinstance(iterations, Integral) or iterations < 0:
        raise ValueError(f"{name} must be an int >= 0, got {iterations!r}")


def train_on_prompts(trainer, prompts, iterations: int, batch_size: int, on_step=None) -> None:
    """The outer loop of the RLHF trainers: ``iterations`` calls of ``trainer.step`` on batches of
    ``batch_size`` drawn from ``prompts`` (any kind :func:`fastrl.rlhf.data.prompt_source` takes);
    ``on_step(iteration, metrics, generation)`` after each."""
    check_iterations(iterations)
    draw, more = prompt_batches(trainer, prompts, batch_size)
    for it in range(iterations):
        metrics, gen = step_on(trainer, draw(), more)
        if on_step is not None:
            on_step(it, metrics, gen)


class TrainsOnPrompts:
    """``train`` for an RLHF trainer with ``step`` and ``batch_size`` (prompts a step draws), and
    the trainers' place in a job (:meth:`join_job`)."""

    def join_job(self, cfg, batch_field: str, *models) -> None:
        """The job this trainer is one rank of: its device (the policy's), the process group, this
        rank's share of each step's prompts (``cfg.<batch_field>``), ``models`` sharded with FSDP2
        when ``cfg.fsdp`` (call it before building optimizers: they must hold the shards), and the
        generators: each rank its own sampling noise (rank 0 that of one process), the data
        generator shared, so that every rank draws the same global batch and takes its share."""
        name = type(cfg).__name__
        self.device = self.policy.lm_head.weight.device
        self.world = distributed.init(self.device)
        try:
            self.prompt_shard = distributed.shard(getattr(cfg, batch_field), self.world, batch_field)
        except ValueError as e:
            raise ConfigError(f"{name}.{e}", batch_field) from None
        self.sharded = shard_models(name, cfg.fsdp, self.world, *models)
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed + self.world.rank)
        self.cpu_generator = torch.Generator().manual_seed(cfg.seed)

    def train(self, prompts, iterations: int, on_step=None, **run) -> None:
        """``iterations`` steps on batches drawn from ``prompts`` (strings, token tensors,
        conversations, records with a "prompt" or a ``datasets.Dataset``:
        :func:`fastrl.rlhf.data.prompt_source`); ``on_step(iteration, metrics, generation)`` after
        each. With ``out_dir=...`` (and ``checkpoint_every``, ``resume``, ...) a logged, checkpointed run:
        :func:`fastrl.rlhf.run.train_run`."""
        if run:
            from fastrl.rlhf.run import train_run

            train_run(self, prompts, iterations, on_step=on_step, **run)
            return
        train_on_prompts(self, prompts, iterations, self.batch_size, on_step)
