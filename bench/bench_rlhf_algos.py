"""Response tokens per second of one update of every RLHF algorithm of the demo (ppo, grpo, rloo,
reinforce_pp, gspo, cispo, dpo), with fastrl's native ops against the same trainers on the
PyTorch fallbacks of those ops (``fastrl.set_backend("torch")``), in the same process.

    .venv/bin/python -m pytest bench/bench_rlhf_algos.py -p no:cacheprovider --benchmark-columns=median

The trainers and settings are the demo's (``fastrl.rlhf.demo.make_trainer``: its 2-layer 64-wide
GPT, 16 prompts x 8 responses for the GRPO family, 64 for PPO, 64 pairs for DPO; one thread), on
a GPT with random weights (the cost of an update does not depend on what the model learned). The
GRPO family and PPO sample one batch of responses (untimed) and then time ``trainer.update`` on
it: log-probs, advantages, every epoch and minibatch of the loss, backward and AdamW (PPO: and
the critic, and the reward model's scores). DPO times ``trainer.step``: the policy's log-probs of
a batch of chosen and rejected responses, the loss, backward and AdamW (the reference's log-probs
are computed once, at construction). tokens/s counts response tokens (DPO: chosen plus rejected).
"""

import random

import pytest
import torch

import fastrl
from fastrl import _native
from fastrl.nn.gpt import GPT
from fastrl.rlhf.data import Preference, encode_prompts
from fastrl.rlhf.demo import ALGOS, DemoConfig, Prepared, make_trainer
from fastrl.rlhf.reward_model import RewardModel
from fastrl.rlhf.synthetic import TOKENIZER, sample_prompt
from fastrl.utils.seeding import seed_everything

BACKENDS = {"native": "fastrl_native", "torch": "pytorch_fallback"}  # the fallback: the baseline


def _prepared(cfg: DemoConfig, pairs: int) -> Prepared:
    """The demo's starting point with random weights and random pairs in place of SFT and labels."""
    seed_everything(0)
    rng = random.Random(0)
    letters = "abcdefghij"

    def response():
        return "".join(rng.choice(letters) for _ in range(rng.randint(1, 10)))

    preferences = [Preference(sample_prompt(rng), response(), response()) for _ in range(pairs)]
    reward_model = RewardModel(cfg.model).requires_grad_(False)
    return Prepared(GPT(cfg.model), preferences, reward_model, {}, 0.0, 0.0)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("algo", ALGOS)
def test_rlhf_update_by_algorithm(benchmark, algo, backend):
    if backend == "native" and _native._C is None:
        pytest.skip("the native ops are not built")
    torch.set_num_threads(1)
    cfg = DemoConfig(algo=algo)
    prep = _prepared(cfg, pairs=4 * cfg.dpo.batch_size)
    trainer, _ = make_trainer(cfg, prep)
    fastrl.set_backend(backend)
    try:
        if algo == "dpo":
            pairs = prep.pairs[: cfg.dpo.batch_size]  # a batch's worth (the batches are as long on average)
            tokens = sum(len(TOKENIZER.encode(p.chosen)) + len(TOKENIZER.encode(p.rejected)) for p in pairs)
            run = trainer.step
        else:
            rng = random.Random(1)
            prompts = [sample_prompt(rng) for _ in range(trainer.batch_size)]
            ids, mask = encode_prompts(prompts, TOKENIZER)
            if algo == "ppo":
                _, gen = trainer.step(ids, mask)
                run = lambda: trainer.update(gen)  # noqa: E731
            else:
                gen, scores = trainer.sample(ids, mask)
                run = lambda: trainer.update(gen, scores)  # noqa: E731
            tokens = int(gen.response_mask.sum())
        benchmark.group = f"rlhf {algo} update (demo size)"
        benchmark.extra_info["impl"] = BACKENDS[backend]
        benchmark.pedantic(run, rounds=20, warmup_rounds=3, iterations=1)
    finally:
        fastrl.set_backend("auto")
    benchmark.extra_info["tokens_per_second"] = tokens / benchmark.stats.stats.median
