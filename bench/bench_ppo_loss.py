"""Forward+backward time and peak extra memory of the fused PPO + KL loss.

    .venv/bin/python -m pytest bench/bench_ppo_loss.py -p no:cacheprovider --benchmark-columns=median

Compared: `fused` (fastrl.ops.ppo_loss), `eager` (ppo_loss_reference) and `compiled`
(torch.compile of the reference, warmed up before timing), on the CPU in float32 at
(B, T, V) = (4, 256, 32000) and on CUDA in bf16 at (8, 1024, 32000) and (4, 1024, 128256);
and `from_hidden` (ppo_loss_from_hidden) at V = 128256. `test_ppo_loss_variants`: the options of
issue 17 (GSPO's sequence-level ratios, CISPO, token weights), fused vs the compiled reference.

Peak extra memory = the highest allocated total during one forward+backward minus the total
before it, so it counts the logits gradient itself. On CUDA: torch.cuda.max_memory_allocated.
On the CPU, where torch keeps no peak counter: the running total that the CPU allocator reports
with every allocation event under torch.profiler(profile_memory=True). Recorded in
benchmark.extra_info as bytes and as ratios to the logits gradient and to the full logits
(targets: fused <= 1.2x the gradient; from_hidden, beyond the hidden/weight gradients it must
return, <= 10% of the full logits).
"""

import pytest
import torch
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

from fastrl.ops import ppo_loss, ppo_loss_from_hidden
from fastrl.ops.ppo_loss import ppo_loss_reference

OPTIONS = dict(clip_low=0.2, clip_high=0.28, kl_coef=0.05, kl_estimator="k3", entropy_coef=0.01)
SHAPES = [
    pytest.param("cpu", (4, 256, 32000), torch.float32, id="cpu-4x256x32000-fp32"),
    pytest.param("cuda", (8, 1024, 32000), torch.bfloat16, marks=pytest.mark.cuda, id="cuda-8x1024x32000-bf16"),
    pytest.param("cuda", (4, 1024, 128256), torch.bfloat16, marks=pytest.mark.cuda, id="cuda-4x1024x128256-bf16"),
]  # fmt: skip
_compiled_reference = torch.compile(ppo_loss_reference)


def token_inputs(shape, vocab, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    actions = torch.randint(0, vocab, shape, generator=g)
    old = -10 + 0.3 * torch.randn(shape, generator=g)
    inputs = dict(
        actions=actions, old_logprobs=old, advantages=torch.randn(shape, generator=g),
        ref_logprobs=old + 0.1 * torch.randn(shape, generator=g), mask=torch.rand(shape, generator=g) > 0.1,
    )  # fmt: skip
    return {k: v.to(device) for k, v in inputs.items()}


def peak_extra_bytes(fn, device: str) -> int:
    """Highest allocated total during fn() minus the total before it."""
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            events.append((event.start_time_ns, event.extra_fields))
    events.sort(key=lambda e: e[0])
    first = events[0][1]
    before = first.total_allocated - first.alloc_size  # the total just before the first event
    return max(e.total_allocated for _, e in events) - before


def timed(benchmark, step, device):
    def run():
        step()
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):  # warm-up (and compilation) outside the timed rounds
        run()
    benchmark.pedantic(run, rounds=5, iterations=1)


@pytest.mark.parametrize("impl", ["fused", "eager", "compiled"])
@pytest.mark.parametrize("device, shape, dtype", SHAPES)
def test_ppo_loss(benchmark, impl, device, shape, dtype):
    *batch, vocab = shape
    logits = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    inputs = token_inputs(tuple(batch), vocab, device)
    fn = {"fused": ppo_loss, "eager": ppo_loss_reference, "compiled": _compiled_reference}[impl]

    def step():
        loss, _ = fn(logits, **inputs, **OPTIONS)
        (grad,) = torch.autograd.grad(loss, logits)
        return grad

    benchmark.group = f"ppo_loss {device} {'x'.join(map(str, shape))} {str(dtype)[6:]}"
    benchmark.extra_info["impl"] = {"fused": "fastrl_fused", "eager": "reference_eager",
                                    "compiled": "reference_compiled"}[impl]
    timed(benchmark, step, device)
    peak = peak_extra_bytes(step, device)
    logits_bytes = logits.numel() * logits.element_size()  # = the gradient's size
    benchmark.extra_info.update(
        peak_extra_bytes=peak, logits_bytes=logits_bytes, peak_over_grad=peak / logits_bytes
    )


# Issue 17's options: each adds work on [N] tensors only (GSPO: a per-sequence reduction and a
# second pass over the per-token terms), so the fused times should stay those of plain PPO.
VARIANTS = {"gspo": dict(importance_level="sequence"), "cispo": dict(policy_loss="cispo"), "token_weights": {}}


@pytest.mark.parametrize("impl", ["fused", "compiled"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("device, shape, dtype", SHAPES)
def test_ppo_loss_variants(benchmark, impl, variant, device, shape, dtype):
    *batch, vocab = shape
    logits = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    inputs = token_inputs(tuple(batch), vocab, device)
    if variant == "token_weights":
        inputs["token_weights"] = torch.rand(tuple(batch), generator=torch.Generator().manual_seed(1)).to(device)
    fn = {"fused": ppo_loss, "compiled": _compiled_reference}[impl]

    def step():
        loss, _ = fn(logits, **inputs, **OPTIONS, **VARIANTS[variant])
        (grad,) = torch.autograd.grad(loss, logits)
        return grad

    benchmark.group = f"ppo_loss {variant} {device} {'x'.join(map(str, shape))} {str(dtype)[6:]}"
    benchmark.extra_info["impl"] = {"fused": "fastrl_fused", "compiled": "reference_compiled"}[impl]
    timed(benchmark, step, device)
    peak = peak_extra_bytes(step, device)
    logits_bytes = logits.numel() * logits.element_size()
    benchmark.extra_info.update(
        peak_extra_bytes=peak, logits_bytes=logits_bytes, peak_over_grad=peak / logits_bytes
    )


HIDDEN_SHAPES = [
    pytest.param("cpu", (4, 256), 512, torch.float32, id="cpu-4x256-H512-V128256-fp32"),
    pytest.param("cuda", (4, 1024), 4096, torch.bfloat16, marks=pytest.mark.cuda, id="cuda-4x1024-H4096-V128256-bf16"),
]  # fmt: skip


@pytest.mark.parametrize("device, batch, hidden_size, dtype", HIDDEN_SHAPES)
def test_ppo_loss_from_hidden(benchmark, device, batch, hidden_size, dtype):
    vocab = 128256
    hidden = torch.randn(*batch, hidden_size, device=device, dtype=dtype, requires_grad=True)
    weight = (0.02 * torch.randn(vocab, hidden_size, device=device, dtype=dtype)).requires_grad_()
    inputs = token_inputs(batch, vocab, device)

    def step():
        loss, _ = ppo_loss_from_hidden(hidden, weight, **inputs, **OPTIONS)
        return torch.autograd.grad(loss, (hidden, weight))

    benchmark.group = f"ppo_loss_from_hidden {device} {'x'.join(map(str, batch))} H={hidden_size} V={vocab}"
    benchmark.extra_info["impl"] = "fastrl_from_hidden"
    timed(benchmark, step, device)
    peak = peak_extra_bytes(step, device)
    grads_bytes = (hidden.numel() + weight.numel()) * hidden.element_size()
    logits_bytes = hidden.numel() // hidden_size * vocab * hidden.element_size()
    benchmark.extra_info.update(
        peak_extra_bytes=peak, grads_bytes=grads_bytes, logits_bytes=logits_bytes,
        extra_beyond_grads_over_logits=(peak - grads_bytes) / logits_bytes,
    )  # fmt: skip
