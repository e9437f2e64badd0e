"""The offline RLHF demo: the whole pipeline in minutes on a CPU with nothing downloaded, on the
synthetic task of :mod:`fastrl.rlhf.synthetic` (a small language and a hidden preference rule
standing in for human raters).

The pipeline. SFT a small GPT on the corpus -> sample two responses per prompt -> label them by
the hidden rule -> train the reward model (Bradley-Terry) -> PPO, GRPO, RLOO or REINFORCE++ (the
GRPO trainer with that ``advantage_estimator``) against the reward model; or, for ``algo="dpo"``,
DPO on the labeled pairs instead of the reward model and RL -> metrics (metrics.csv and
TensorBoard, by the run logger), a plot of reward-model score, hidden score and KL over
training, summary.json and the models.

Under torchrun (docs/distributed.md) every stage is the algorithm of one process: SFT, labeling and
the reward model run alike on every rank (same seed, same data; then rank 0's weights and pairs
are broadcast, so that no GPU kernel's rounding can part the ranks), the RL or DPO trainer splits
each global batch over the ranks, and rank 0 alone writes the files and the progress bars.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from fastrl import distributed
from fastrl.nn.gpt import GPT, GPTConfig, generate
from fastrl.rlhf.data import Preference, encode_prompts, pad
from fastrl.rlhf.dpo import DPOConfig, DPOTrainer
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer
from fastrl.rlhf.ppo import PPOTrainer, RLHFPPOConfig
from fastrl.rlhf.reward_model import RewardModel, RewardModelConfig, train_reward_model
from fastrl.rlhf.rollout import response_logprobs, sequence_kl
from fastrl.rlhf.synthetic import (
    BEST_SCORE,
    MAX_PROMPT_TOKENS,
    MAX_SFT_RESPONSE,
    TOKENIZER,
    hidden_scores,
    label_pairs,
    prompts,
    sample_prompt,
    sft_response,
)
from fastrl.utils.config import (
    AT_LEAST_ONE,
    POSITIVE,
    SEED,
    ConfigError,
    SelfChecking,
    check_device,
)
from fastrl.utils.logging import RunLogger
from fastrl.utils.plots import read_metrics

ALGOS = ("ppo", "grpo", "rloo", "reinforce_pp", "gspo", "cispo", "dpo")
# The GRPO trainer's variants by loss: GSPO's sequence-level ratios, CISPO's clipped IS weights.
LOSS_VARIANTS = {"gspo": {"importance_level": "sequence"}, "cispo": {"policy_loss": "cispo"}}


def train_sft(model: GPT, n_examples: int, steps: int, batch_size: int, lr: float, seed: int,
              progress=None) -> float:  # fmt: skip
    """Supervised fine-tuning on the corpus: next-token loss on the response tokens (and EOS).
    Returns the final loss."""
    rng = random.Random(seed)
    device = model.lm_head.weight.device
    seqs, starts = [], []
    for _ in range(n_examples):
        prompt = TOKENIZER.encode(sample_prompt(rng))
        starts.append(len(prompt))
        seqs.append(prompt + TOKENIZER.encode(sft_response(TOKENIZER.decode(prompt), rng)) + [TOKENIZER.eos_id])
    ids, mask = (x.to(device) for x in pad(seqs, TOKENIZER.pad_id))
    cols = torch.arange(ids.shape[1], device=device)
    is_response = mask & (cols >= torch.tensor(starts, device=device)[:, None])
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, n_examples, (batch_size,), generator=g).to(device)
        logits = model(ids[idx], mask[idx])[:, :-1]
        targets = ids[idx, 1:].masked_fill(~is_response[idx, 1:], -100)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(1)
    return loss.item()


@dataclass
class DemoConfig(SelfChecking):
    algo: str = "ppo"
    """What trains the SFT model: "ppo", "grpo", "rloo" or "reinforce_pp" (the GRPO trainer and
    settings with that advantage_estimator), "gspo" or "cispo" (GRPO with importance_level="sequence"
    or policy_loss="cispo") against the reward model, or "dpo" on the labeled pairs (no reward model)."""
    out: str = "runs/rlhf-demo"
    """Directory for metrics.csv, training.png, summary.json and the models."""
    seed: int = 0
    """Seed of the corpus, the prompts and the models."""
    device: str = "cpu"
    """Where everything runs: "cpu" or "cuda"."""
    cpu_threads: int | None = 1
    """torch CPU threads (None: leave as is). The demo's matrices are tiny: one thread avoids
    the cost of splitting them (docs/ARCHITECTURE.md, "Threads on small machines")."""
    model: GPTConfig = field(default_factory=lambda: GPTConfig(
        vocab_size=TOKENIZER.vocab_size, block_size=24, n_layer=2, n_head=4, n_embd=64))  # fmt: skip
    """Size of the policy, reference, critic and reward model."""
    sft_examples: int = 20000
    """Size of the supervised corpus."""
    sft_steps: int = 600
    """SFT gradient steps."""
    sft_batch_size: int = 64
    """SFT sequences per step."""
    sft_learning_rate: float = 1e-3
    """SFT AdamW learning rate."""
    preference_prompts: int = 12000
    """Prompts sampled twice and labeled by the hidden rule (near-ties dropped)."""
    reward: RewardModelConfig = field(default_factory=lambda: RewardModelConfig(epochs=8, learning_rate=1e-3))
    """Reward-model training."""
    rl_prompts: int = 4000
    """Prompt pool for PPO/GRPO."""
    iterations: int = 200
    """PPO/GRPO steps."""
    max_new_tokens: int = 14
    """Longest response (SFT responses have at most 10 letters + EOS)."""
    ppo: RLHFPPOConfig = field(default_factory=lambda: RLHFPPOConfig(batch_size=64, learning_rate=1e-3, target_kl=4.0,
                                                                    kl_horizon=2000))
    """PPO settings (max_new_tokens and seed are taken from this config)."""
    grpo: GRPOConfig = field(
        default_factory=lambda: GRPOConfig(prompts_per_step=16, group_size=8, learning_rate=5e-4, kl_coef=0.3))
    """GRPO settings, also of rloo and reinforce_pp (max_new_tokens, seed and advantage_estimator
    are taken from this config)."""
    dpo: DPOConfig = field(default_factory=lambda: DPOConfig(beta=0.1, learning_rate=1e-4, epochs=2, batch_size=64))
    """DPO settings (seed is taken from this config); it trains for dpo.epochs passes over the pairs."""
    eval_prompts: int = 512
    """Held-out prompts for the before/after hidden score and KL."""
    log_every: int = 5
    """Read metrics back to the host every this many RL steps."""

    field_rules = {
        "algo": ALGOS, "seed": SEED, "cpu_threads": AT_LEAST_ONE, "sft_examples": AT_LEAST_ONE,
        "sft_steps": AT_LEAST_ONE, "sft_batch_size": AT_LEAST_ONE, "sft_learning_rate": POSITIVE,
        "preference_prompts": AT_LEAST_ONE, "rl_prompts": AT_LEAST_ONE, "iterations": AT_LEAST_ONE,
        "max_new_tokens": AT_LEAST_ONE, "eval_prompts": AT_LEAST_ONE, "log_every": AT_LEAST_ONE,
    }
    renamed = {"sft_lr": "sft_learning_rate"}

    def validate(self) -> None:
        if isinstance(self.out, os.PathLike):  # a Path is as good as its string
            self.out = os.fspath(self.out)
        super().validate()

    def check(self) -> None:
        """The nested configs are checked with the fields; the device must be usable, and the
        model must hold the demo's sequences."""
        if not self.out:
            raise ConfigError("DemoConfig.out must be a directory path, got ''", "out")
        check_device(self.device, "DemoConfig.device")
        if self.model.vocab_size != TOKENIZER.vocab_size:
            raise ConfigError(f"DemoConfig.model.vocab_size must be {TOKENIZER.vocab_size} (the demo's "
                              f"tokenizer), got {self.model.vocab_size}")
        # the longest sequences: an SFT example, and a prompt + sampled response + EOS
        need = MAX_PROMPT_TOKENS + max(MAX_SFT_RESPONSE, self.max_new_tokens) + 1
        if self.model.block_size < need:
            raise ConfigError(f"DemoConfig.model.block_size must be >= {need} for prompts of "
                              f"{MAX_PROMPT_TOKENS} tokens and max_new_tokens={self.max_new_tokens}, "
                              f"got {self.model.block_size}")


@torch.no_grad()
def evaluate(policy: GPT, reference: GPT, prompt_texts, max_new_tokens: int, seed: int):
    """Mean hidden score and mean KL(policy || reference) per response on the given prompts."""
    device = policy.lm_head.weight.device
    ids, mask = encode_prompts(prompt_texts, TOKENIZER, device)
    gen = generate(policy, ids, mask, max_new_tokens=max_new_tokens, stop_token=TOKENIZER.eos_id,
                   generator=torch.Generator(device).manual_seed(seed))  # fmt: skip
    kl = sequence_kl(response_logprobs(policy, gen, 1.0), response_logprobs(reference, gen, 1.0),
                     gen.response_mask)  # fmt: skip
    return hidden_scores(gen).mean().item(), kl.mean().item()


def _plot(metrics_csv: Path, sft_score: float, path: Path, algo: str) -> None:
    """From the run's metrics.csv against the step: reward-model score, hidden score and KL for
    the RL algorithms; DPO's loss, pair accuracy and implicit-reward margin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = read_metrics(metrics_csv)
    steps = m["step"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if algo == "dpo":
        for ax, (column, title) in zip(axes, [("loss", "DPO loss"), ("accuracy", "pairs ranked right"),
                                              ("margin", "implicit-reward margin")]):  # fmt: skip
            ax.plot(steps, m[column])
            ax.set_title(title)
    else:
        axes[0].plot(steps, m["score"])
        axes[0].set_title("reward-model score (normalized)")
        axes[1].plot(steps, m["hidden_score"], label=algo.upper())
        axes[1].axhline(sft_score, color="gray", ls="--", label="SFT")
        axes[1].axhline(BEST_SCORE, color="green", ls=":", label="best achievable")
        axes[1].set_title("hidden-rule score (the raters)")
        axes[1].legend()
        axes[2].plot(steps, m["kl"])
        axes[2].set_title("KL to reference (nats / response)")
    for ax in axes:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class Prepared:
    """What the training phase starts from."""

    policy: GPT
    """The SFT model (trained in place)."""
    pairs: list[Preference]
    """The preference pairs labeled by the hidden rule."""
    reward_model: RewardModel | None
    """Trained on the pairs, frozen (None for DPO, which trains on the pairs themselves)."""
    reward_metrics: dict
    """train_reward_model's metrics (none for DPO), plus ``pairs``."""
    sft_score: float
    """Mean hidden score of the SFT model on the evaluation prompts."""
    seconds: float
    """Wall time of SFT, labeling and reward-model training."""


def eval_prompts(cfg: DemoConfig) -> list[str]:
    return prompts(cfg.eval_prompts, cfg.seed + 1000)


def prepare(cfg: DemoConfig) -> Prepared:
    """SFT -> preference pairs labeled by the hidden rule -> reward model (not for DPO).

    Under torchrun every rank runs these stages alike, then takes rank 0's weights and pairs:
    the stages are small, and an identical run needs no change to the SFT and reward-model
    loops (sharding them would save little time and add collectives to both)."""
    DemoConfig.checked("cfg", cfg)
    start = time.perf_counter()
    world = distributed.init(cfg.device)
    device = distributed.rank_device(cfg.device)
    if cfg.cpu_threads is not None:
        torch.set_num_threads(cfg.cpu_threads)
    torch.manual_seed(cfg.seed)
    policy = GPT(cfg.model).to(device)
    with tqdm(total=cfg.sft_steps, desc="sft", leave=False, disable=not world.is_main) as bar:
        train_sft(policy, cfg.sft_examples, cfg.sft_steps, cfg.sft_batch_size, cfg.sft_learning_rate, cfg.seed,
                  bar.update)
    distributed.broadcast_module(policy)
    sft_score, _ = evaluate(policy, policy, eval_prompts(cfg), cfg.max_new_tokens, cfg.seed)

    pairs = label_pairs(policy, prompts(cfg.preference_prompts, cfg.seed + 1), cfg.max_new_tokens, cfg.seed)
    pairs = distributed.broadcast_object(pairs)
    reward_model, metrics = None, {}
    if cfg.algo != "dpo":
        reward_model = RewardModel.from_lm(policy)
        steps_per_epoch = -(-round(len(pairs) * (1 - cfg.reward.eval_fraction)) // cfg.reward.batch_size)
        with tqdm(total=cfg.reward.epochs * steps_per_epoch, desc="reward model", leave=False,
                  disable=not world.is_main) as bar:
            metrics = train_reward_model(reward_model, pairs, TOKENIZER, cfg.reward, bar.update)
        distributed.broadcast_module(reward_model)
        reward_model.requires_grad_(False)
    return Prepared(policy, pairs, reward_model, {**metrics, "pairs": len(pairs)}, sft_score,
                    time.perf_counter() - start)  # fmt: skip


def make_trainer(cfg: DemoConfig, prep: Prepared):
    """``(trainer, steps)`` of ``cfg.algo`` on the prepared SFT model: PPO or the GRPO trainer
    (grpo, rloo, reinforce_pp: its advantage_estimator) against the reward model, for
    ``cfg.iterations`` steps; DPO on the labeled pairs for ``cfg.dpo.epochs`` passes over them."""
    shared = {"max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed}
    if cfg.algo == "dpo":
        trainer = DPOTrainer(prep.policy, prep.pairs, TOKENIZER, replace(cfg.dpo, seed=cfg.seed))
        return trainer, cfg.dpo.epochs * trainer.steps_per_epoch
    if prep.reward_model is None:
        raise ValueError(f"prep: {cfg.algo} needs a reward model; this was prepared for DPO (none trained)")
    if cfg.algo == "ppo":
        return PPOTrainer(prep.policy, prep.reward_model, TOKENIZER, replace(cfg.ppo, **shared)), cfg.iterations
    if cfg.algo in LOSS_VARIANTS:
        grpo = replace(cfg.grpo, **shared, advantage_estimator="grpo", **LOSS_VARIANTS[cfg.algo])
    else:
        grpo = replace(cfg.grpo, **shared, advantage_estimator=cfg.algo)
    return GRPOTrainer(prep.policy, prep.reward_model, TOKENIZER, grpo), cfg.iterations


def run_rl(cfg: DemoConfig, prep: Prepared) -> dict:
    """Trains the prepared SFT model by ``cfg.algo`` (:func:`make_trainer`); writes metrics.csv
    and TensorBoard scalars (the run logger: one row per step), training.png, summary.json and the
    models to ``cfg.out``; returns the summary.

    Under torchrun every rank trains its share of each batch; rank 0 alone logs, evaluates and
    writes, and every rank returns its summary."""
    DemoConfig.checked("cfg", cfg)
    start = time.perf_counter()
    world = distributed.init(cfg.device)
    out = Path(cfg.out)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
    policy, reward_model = prep.policy, prep.reward_model
    trainer, steps = make_trainer(cfg, prep)
    pending = []
    bar = tqdm(total=steps, desc=cfg.algo, disable=not world.is_main)
    # the demo's own bar shows the RLHF metrics; the logger's would show an episodic return
    logger = RunLogger(out, steps, progress=False, columns=("step", "wall_time")) if world.is_main else None
    shown = ("loss", "accuracy", "margin") if cfg.algo == "dpo" else ("score", "hidden_score", "kl")

    def on_step(it, metrics, gen):
        if gen is not None:  # DPO samples nothing
            # the job's mean: every rank holds as many responses
            (score,) = distributed.global_sum(hidden_scores(gen).mean())
            metrics = {**metrics, "hidden_score": score / world.size}
        pending.append((it, metrics))
        if not world.is_main:
            pending.clear()
        elif len(pending) == cfg.log_every or it == steps - 1:
            # one host read for the last few steps
            values = torch.stack([torch.stack(list(m.values())) for _, m in pending]).tolist()
            for (step, m), vals in zip(pending, values):
                logger.log(step, **dict(zip(m, vals)))
            last = dict(zip(pending[-1][1], values[-1]))
            pending.clear()
            bar.set_postfix({k: f"{last[k]:.2f}" for k in shown})
        bar.update(1)

    try:
        if cfg.algo == "dpo":
            for it in range(steps):
                on_step(it, trainer.step(), None)
        else:
            trainer.train(prompts(cfg.rl_prompts, cfg.seed + 2), steps, on_step)
    finally:
        bar.close()
        if logger is not None:
            logger.close()
    if not world.is_main:  # rank 0's summary: every rank ends with the same weights
        return distributed.broadcast_object(None)
    final_score, final_kl = evaluate(policy, trainer.reference, eval_prompts(cfg), cfg.max_new_tokens, cfg.seed + 1)
    _plot(logger.csv_path, prep.sft_score, out / "training.png", cfg.algo)
    torch.save(policy.state_dict(), out / "policy.pt")
    if reward_model is not None:
        reward_model.save(out / "reward_model.pt")
    summary = {
        "algo": cfg.algo,
        "preference_pairs": prep.reward_metrics["pairs"],
        "reward_model_eval_accuracy": prep.reward_metrics.get("eval_accuracy"),  # None: no held-out pairs, or DPO
        "sft_hidden_score": prep.sft_score,
        "final_hidden_score": final_score,
        "best_hidden_score": BEST_SCORE,
        "gap_closed": (final_score - prep.sft_score) / (BEST_SCORE - prep.sft_score),
        "final_kl": final_kl,
        "steps": steps,
        "prepare_seconds": prep.seconds,
        "rl_seconds": time.perf_counter() - start,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return distributed.broadcast_object(summary)


def run_demo(cfg: DemoConfig) -> dict:
    """The whole demo: :func:`prepare` then :func:`run_rl`. The config is validated and the
    output directory created before any work."""
    DemoConfig.checked("cfg", cfg)
    main = distributed.init(cfg.device).is_main
    if main:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = run_rl(cfg, prepare(cfg))
    summary["seconds"] = time.perf_counter() - start
    if main:
        (Path(cfg.out) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
