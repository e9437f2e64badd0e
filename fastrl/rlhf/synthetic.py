"""The synthetic task of the offline RLHF demo (:mod:`fastrl.rlhf.demo`): a small language and a
hidden preference rule standing in for human raters, so the pipeline needs nothing downloaded.

The language. A prompt is a "topic": 3 to 5 distinct letters of ``a..l`` then ``=``
(``"dak="``). A response is 4 to 10 letters then EOS. The supervised corpus mixes careful and
careless writers: each response draws its own focus ``f ~ U(0, 1)``, and each of its letters
comes from the topic with probability ``f`` and is uniform over the alphabet otherwise.

The raters. They prefer responses that stay on topic: the hidden score of a response is the
fraction of its letters that occur in the prompt (0 for an empty response), so the best
achievable score is 1 (``BEST_SCORE``). They state a preference only when two responses differ
clearly (by ``MIN_GAP``), as raters skip near-ties.
"""

from __future__ import annotations

import random

import torch

from fastrl.nn.gpt import GPT, Generation, generate
from fastrl.rlhf.data import Preference, encode_prompts
from fastrl.rlhf.tokenizer import CharTokenizer

ALPHABET = "abcdefghijkl"
SEP = "="
MIN_GAP = 0.15
MAX_PROMPT_TOKENS = 6  # up to 5 topic letters and SEP
MAX_SFT_RESPONSE = 10  # letters of an SFT response (then EOS)
BEST_SCORE = 1.0  # every response character on topic
TOKENIZER = CharTokenizer(ALPHABET + SEP)


def sample_prompt(rng: random.Random) -> str:
    return "".join(rng.sample(ALPHABET, rng.randint(3, MAX_PROMPT_TOKENS - 1))) + SEP


def sft_response(prompt: str, rng: random.Random) -> str:
    topic, focus = prompt[:-1], rng.random()
    return "".join(rng.choice(topic) if rng.random() < focus else rng.choice(ALPHABET)
                   for _ in range(rng.randint(4, MAX_SFT_RESPONSE)))  # fmt: skip


def hidden_score(prompt: str, response: str) -> float:
    """The raters' rule on strings: share of response characters that are topic letters."""
    return sum(c in prompt[:-1] for c in response) / len(response) if response else 0.0


def hidden_scores(gen: Generation) -> torch.Tensor:
    """The same rule on a batch of generations, on their device: ``[B]``."""
    prompt, response = gen.ids[:, : gen.prompt_len], gen.response
    chars = gen.response_mask & (response != TOKENIZER.eos_id) & (response != TOKENIZER.pad_id)  # [B, N]
    topic = torch.zeros(gen.ids.shape[0], TOKENIZER.vocab_size, dtype=torch.bool, device=gen.ids.device)
    topic.scatter_(1, prompt, gen.mask[:, : gen.prompt_len])  # [B, V]: token occurs in the prompt
    topic[:, TOKENIZER.encode(SEP)[0]] = False
    hits = (topic.gather(1, response) & chars).sum(1)
    return hits / chars.sum(1).clamp(min=1)


def prompts(n: int, seed: int) -> list[str]:
    """``n`` prompts drawn with ``seed``."""
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
