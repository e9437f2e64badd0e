"""fastrl's GRPO step against TRL's GRPOTrainer, side by side (issue 17, "Speed - against TRL").

    .venv/bin/python -m pytest bench/bench_trl.py -p no:cacheprovider --benchmark-columns=median

The same set-up for both: a tiny GPT-2 (transformers GPT2LMHeadModel from a config: 2 layers,
width 64) saved to a local directory that both load, a byte-level BPE tokenizer trained offline
with ``tokenizers`` (vocab 300, or 32000 for the large-vocabulary case), the same 64 prompts, one
rule reward, group 8, 8 prompts a step, at most 16 new tokens, one optimizer step per batch (TRL:
steps_per_generation = num_iterations = 1; fastrl: epochs = num_minibatches = 1), beta 0 or
0.04, torch.set_num_threads(1), CPU.

One benchmark per implementation and case: each round times one step of it, after one untimed
step of the other, so the two alternate and a busy machine slows both alike. fastrl's step is
``GRPOTrainer.step`` on ``fastrl.nn.hf.HFCausalLM``; TRL's comes from its own ``Trainer.train``
loop (data loading, generation, rewards, loss, backward, optimizer, logging), run in a thread that
a callback stops at the end of each step until the next round releases it. A step's tokens are
the completion tokens it sampled (EOS included). extra_info: ``tokens_per_second`` (the median
over rounds of tokens / step time), both implementations' rates in this run
(``fastrl_tokens_per_second``, ``trl_tokens_per_second``) and their ratio (``speedup``, fastrl
over TRL).
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest
import torch

trl = pytest.importorskip("trl")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from fastrl.nn.hf import HFCausalLM  # noqa: E402
from fastrl.rlhf.grpo import GRPOConfig, GRPOTrainer  # noqa: E402
from fastrl.rlhf.rollout import prompt_batches  # noqa: E402
from fastrl.rlhf.tokenizer import HFTokenizer  # noqa: E402

PROMPTS_PER_STEP, GROUP, NEW_TOKENS = 8, 8, 16
ROUNDS, WARMUP = 8, 2
WORDS = ["the", "cat", "sat", "on", "a", "mat", "while", "dog", "ran", "after", "red", "balls", "in", "green",
         "parks", "and", "blue", "rivers", "under", "bright", "summer", "skies", "near", "old", "stone"]  # fmt: skip


def corpus(lines: int) -> list[str]:
    """Deterministic text for the BPE and the prompts: word salad plus numbered tokens, so that a
    large vocabulary has enough distinct pieces to learn."""
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(lines):
        picks = torch.randint(0, len(WORDS), (8,), generator=g).tolist()
        out.append(" ".join(WORDS[j] for j in picks) + f" w{i * 7919 % 100003} x{i}")
    return out


def build_model_dir(path, vocab: int) -> None:
    """A BPE tokenizer of ``vocab`` ids trained offline and a fresh 2-layer GPT-2 saved to ``path``."""
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|pad|>", "<|eos|>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
                                             show_progress=False)  # fmt: skip
    tok.train_from_iterator(corpus(60000 if vocab > 1000 else 2000), trainer)
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|eos|>")
    hf_tok.padding_side = "left"
    hf_tok.save_pretrained(path)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                                     bos_token_id=hf_tok.eos_token_id, eos_token_id=hf_tok.eos_token_id,
                                     pad_token_id=hf_tok.pad_token_id)  # fmt: skip
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    return len(hf_tok)


def rule(prompts, completions, **kwargs):
    """One rule reward: the share of the completion's characters that are vowels."""
    return [sum(c in "aeiou" for c in text) / max(len(text), 1) for text in completions]


class StepGate(transformers.TrainerCallback):
    """Holds TRL's training loop at the end of each step until ``release`` (one step per round)."""

    def __init__(self):
        self.go, self.done = threading.Semaphore(0), threading.Semaphore(0)
        self.tokens = []  # completion tokens of each step, from the reward's completion_ids

    def on_step_end(self, args, state, control, **kwargs):
        self.threads = torch.get_num_threads()  # what TRL's steps ran with
        self.done.release()
        self.go.acquire()

    def step(self) -> None:
        """Run one more TRL step and wait for its end."""
        self.go.release()
        self.done.acquire()


def trl_trainer(path, beta: float, steps: int, out_dir, gate: StepGate, prompts):
    import datasets

    def counted_rule(prompts, completions, completion_ids, **kwargs):
        gate.tokens.append(sum(len(ids) for ids in completion_ids))
        return rule(prompts, completions)

    args = trl.GRPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=PROMPTS_PER_STEP * GROUP, num_generations=GROUP,
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1,
        max_completion_length=NEW_TOKENS, temperature=1.0, beta=beta, learning_rate=1e-5, max_steps=steps,
        loss_type="grpo", logging_steps=10**6, save_strategy="no", report_to="none", use_cpu=True,
        disable_tqdm=True, dataloader_num_workers=0, seed=0, bf16=False, fp16=False,
    )  # fmt: skip
    return trl.GRPOTrainer(model=str(path), reward_funcs=counted_rule, args=args, callbacks=[gate],
                           train_dataset=datasets.Dataset.from_dict({"prompt": prompts}),
                           processing_class=transformers.AutoTokenizer.from_pretrained(path))  # fmt: skip


@pytest.mark.parametrize("impl", ["fastrl", "trl"])
@pytest.mark.parametrize("beta", [0.0, 0.04], ids=["beta0", "beta0.04"])
@pytest.mark.parametrize("vocab", [300, 32000], ids=["V300", "V32000"])
def test_grpo_step_against_trl(benchmark, tmp_path, model_dirs, vocab, beta, impl):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _compare(benchmark, tmp_path, model_dirs, vocab, beta, impl)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """``get(vocab) -> (directory, tokenizer size)``, each built once (the 32000 BPE takes a while)."""
    built = {}

    def get(vocab):
        if vocab not in built:
            path = tmp_path_factory.mktemp(f"gpt2-V{vocab}")
            built[vocab] = path, build_model_dir(path, vocab)
        return built[vocab]

    return get


def _compare(benchmark, tmp_path, model_dirs, vocab, beta, impl):
    path, vocab = model_dirs(vocab)
    prompts = [" ".join(line.split()[:6]) for line in corpus(64)]

    # fastrl: its GRPO on the transformers wrapper, the same directory
    tok = HFTokenizer(str(path))
    cfg = GRPOConfig(prompts_per_step=PROMPTS_PER_STEP, group_size=GROUP, max_new_tokens=NEW_TOKENS,
                     epochs=1, num_minibatches=1, kl_coef=beta, learning_rate=1e-5, clip_low=0.2)  # fmt: skip
    ours = GRPOTrainer(HFCausalLM.from_pretrained(str(path)), rule, tok, cfg)
    draw, _ = prompt_batches(ours, prompts, PROMPTS_PER_STEP)

    # TRL: its own loop in a thread, one step per release
    gate = StepGate()
    theirs = trl_trainer(path, beta, 1 + WARMUP + ROUNDS, tmp_path / "trl", gate, prompts)
    thread = threading.Thread(target=lambda: (torch.set_num_threads(1), theirs.train()), daemon=True)
    thread.start()
    gate.done.acquire()  # TRL's first step (set-up, first call costs) is not timed

    times = {"fastrl": [], "trl": []}
    tokens = {"fastrl": []}

    def fastrl_step():
        start = time.perf_counter()
        ids, mask, _ = draw()
        _, gen = ours.step(ids, mask)
        tokens["fastrl"].append(int(gen.response_mask.sum()))
        times["fastrl"].append(time.perf_counter() - start)

    def trl_step():
        start = time.perf_counter()
        gate.step()
        times["trl"].append(time.perf_counter() - start)

    # the other's step runs untimed before each round (pedantic's setup): the two alternate, so
    # a busy machine slows both alike
    timed, other = (fastrl_step, trl_step) if impl == "fastrl" else (trl_step, fastrl_step)
    benchmark.group = f"grpo step vs TRL V={vocab} beta={beta}"
    benchmark.extra_info["impl"] = "fastrl_grpo" if impl == "fastrl" else "trl_grpo"
    benchmark.pedantic(timed, setup=other, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)
    gate.go.release()  # the last step's gate; its loop then ends (max_steps)
    thread.join(timeout=60)
    tokens["trl"] = gate.tokens[1:]  # its first step was not timed
    assert len(tokens["trl"]) == len(times["trl"]) == len(times["fastrl"]) == WARMUP + ROUNDS

    rate = {}
    for name in ("fastrl", "trl"):
        rate[name] = statistics.median(n / t for n, t in zip(tokens[name][WARMUP:], times[name][WARMUP:]))
        benchmark.extra_info[f"{name}_tokens_per_second"] = rate[name]
        benchmark.extra_info[f"{name}_tokens_per_step"] = statistics.median(tokens[name][WARMUP:])
    benchmark.extra_info.update(tokens_per_second=rate[impl], speedup=rate["fastrl"] / rate["trl"],
                                threads=torch.get_num_threads(), trl_threads=gate.threads)  # fmt: skip
    print(f"\n{impl} V={vocab} beta={beta}: " + ", ".join(f"{k} {v:.4g}" for k, v in benchmark.extra_info.items()
                                                           if not isinstance(v, str)))
