"""The offline RLHF demo: a synthetic language and a hidden preference rule standing in for
human raters, so the whole pipeline runs in minutes on a CPU with nothing downloaded.

The language. A prompt is a "topic": 3 to 5 distinct letters of ``a..l`` then ``=``
(``"dak="``). A response is 4 to 10 letters then EOS; in the supervised corpus each letter comes
from the topic with probability ``ON_TOPIC`` and is uniform over the alphabet otherwise.

The raters. They prefer responses that stay on topic: the hidden score of a response is the
fraction of its letters that occur in the prompt (0 for an empty response), so the best
achievable score is 1. They state a preference only when two responses differ clearly (by
``MIN_GAP``), as raters skip near-ties.

The pipeline. SFT a small GPT on the corpus -> sample two responses per prompt -> label them by
the hidden rule -> train the reward model (Bradley-Terry) -> PPO or GRPO against the reward
model -> metrics CSV and a plot of reward-model score, hidden score and KL over training.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from fastrl.nn.gpt import GPT, Generation, GPTConfig, generate
from fastrl.rlhf.data import Preference, encode_prompts, pad
from fastrl.rlhf.tokenizer import CharTokenizer

ALPHABET = "abcdefghijkl"
SEP = "="
ON_TOPIC = 0.25
MIN_GAP = 0.15
TOKENIZER = CharTokenizer(ALPHABET + SEP)


def sample_prompt(rng: random.Random) -> str:
    return "".join(rng.sample(ALPHABET, rng.randint(3, 5))) + SEP


def sft_response(prompt: str, rng: random.Random) -> str:
    topic = prompt[:-1]
    return "".join(rng.choice(topic) if rng.random() < ON_TOPIC else rng.choice(ALPHABET)
                   for _ in range(rng.randint(4, 10)))  # fmt: skip


def hidden_score(prompt: str, response: str) -> float:
    """The raters' rule on strings: share of response characters that are topic letters."""
    return sum(c in prompt[:-1] for c in response) / len(response) if response else 0.0


def hidden_scores(gen: Generation) -> torch.Tensor:
    """The same rule on a batch of generations, on their device: ``[B]``."""
    prompt, response = gen.ids[:, : gen.prompt_len], gen.response
    chars = gen.response_mask & (response != TOKENIZER.eos_id)  # [B, N]
    topic = torch.zeros(gen.ids.shape[0], TOKENIZER.vocab_size, dtype=torch.bool, device=gen.ids.device)
    topic.scatter_(1, prompt, gen.mask[:, : gen.prompt_len])  # [B, V]: token occurs in the prompt
    topic[:, TOKENIZER.encode(SEP)[0]] = False
    hits = (topic.gather(1, response) & chars).sum(1)
    return hits / chars.sum(1).clamp(min=1)


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


def prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [sample_prompt(rng) for _ in range(n)]


@torch.no_grad()
def label_pairs(model: GPT, prompt_texts: list[str], max_new_tokens: int, seed: int) -> list[Preference]:
    """Two sampled responses per prompt, labeled by the hidden rule; near-ties are dropped."""
    device = model.lm_head.weight.device
    ids, mask = encode_prompts(prompt_texts + prompt_texts, TOKENIZER, device)
    gen = generate(model, ids, mask, max_new_tokens=max_new_tokens, stop_token=TOKENIZER.eos_id,
                   generator=torch.Generator(device).manual_seed(seed))  # fmt: skip
    texts = [TOKENIZER.decode(r[m]) for r, m in zip(gen.response, gen.response_mask)]
    scores = hidden_scores(gen).tolist()
    n = len(prompt_texts)
    pairs = []
    for i, p in enumerate(prompt_texts):
        a, b = (i, i + n) if scores[i] >= scores[i + n] else (i + n, i)
        if scores[a] - scores[b] >= MIN_GAP:
            pairs.append(Preference(p, texts[a], texts[b], source=f"demo pair {i}"))
    return pairs


def demo_gpt_config() -> GPTConfig:
    return GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=24, n_layer=2, n_head=4, n_embd=64)
