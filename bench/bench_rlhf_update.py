"""Tokens per second and peak extra memory of one PPO-RLHF policy update (GPT forward, loss,
backward) with the fused loss vs the eager reference loss.

    .venv/bin/python -m pytest bench/bench_rlhf_update.py -p no:cacheprovider --benchmark-columns=median

Compared, on the same GPT and the same response tokens:
  `from_hidden`  fastrl.ops.ppo_loss_from_hidden on the hidden states and the LM head (what
                 fastrl.rlhf.PPOTrainer runs: the full logits never exist)
  `fused`        fastrl.ops.ppo_loss on the full logits
  `eager`        ppo_loss_reference (log_softmax + gather) on the full logits
CPU: float32, vocab 32000, 4 responses of 224 tokens after 32 prompt tokens, a 2-layer 256-wide
GPT. CUDA (when present): bf16 autocast, vocab 128256, 8 x 1024 response tokens, 4 layers 1024
wide. extra_info: tokens_per_second (response tokens / median time) and peak extra bytes (see
bench_ppo_loss.peak_extra_bytes), also as a ratio to the size of the full float32 logits.
"""

import pytest
import torch

from bench.bench_ppo_loss import OPTIONS, peak_extra_bytes, timed, token_inputs
from fastrl.nn.gpt import GPT, GPTConfig
from fastrl.ops import ppo_loss, ppo_loss_from_hidden
from fastrl.ops.ppo_loss import ppo_loss_reference

CASES = [
    pytest.param("cpu", 32000, 4, 32, 224, 2, 256, id="cpu-V32000-4x224"),
    pytest.param("cuda", 128256, 8, 64, 1024, 4, 1024, marks=pytest.mark.cuda, id="cuda-V128256-8x1024"),
]  # fmt: skip


@pytest.mark.parametrize("impl", ["from_hidden", "fused", "eager"])
@pytest.mark.parametrize("device, vocab, batch, prompt, response, layers, width", CASES)
def test_ppo_policy_update(benchmark, impl, device, vocab, batch, prompt, response, layers, width):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=vocab, block_size=prompt + response, n_layer=layers, n_head=4, n_embd=width)
    model = GPT(cfg).to(device)
    ids = torch.randint(0, vocab, (batch, prompt + response), device=device)
    mask = torch.ones_like(ids, dtype=torch.bool)
    inputs = token_inputs((batch, response), vocab, device)
    inputs["actions"] = ids[:, prompt:]

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            hidden = model.hidden(ids, mask)[:, prompt - 1 : -1]
        if impl == "from_hidden":
            loss, _ = ppo_loss_from_hidden(hidden, model.lm_head.weight, **inputs, **OPTIONS)
        else:
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                logits = model.lm_head(hidden)
            loss_fn = ppo_loss if impl == "fused" else ppo_loss_reference
            loss, _ = loss_fn(logits, **inputs, **OPTIONS)
        model.zero_grad(set_to_none=True)
        loss.backward()

    benchmark.group = f"rlhf ppo update {device} V={vocab} {batch}x{response}"
    benchmark.extra_info["impl"] = "reference_eager" if impl == "eager" else f"fastrl_{impl}"
    timed(benchmark, step, device)
    peak = peak_extra_bytes(step, device)
    logits_bytes = batch * response * vocab * 4
    benchmark.extra_info.update(
        tokens_per_second=batch * response / benchmark.stats.stats.median,
        peak_extra_bytes=peak, logits_fp32_bytes=logits_bytes, peak_over_logits=peak / logits_bytes,
    )  # fmt: skip
