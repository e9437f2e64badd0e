"""generate() checks its inputs (a host read: one GPU sync) once per call, not once per sampled
token, for fastrl's GPT and the transformers adapter; forward passes still check every call."""

import warnings

import pytest
import torch

from fastrl.nn import gpt, hf
from fastrl.nn.gpt import GPT, GPTConfig, generate

CFG = GPTConfig(vocab_size=13, block_size=32, n_layer=1, n_head=2, n_embd=16)
PROMPTS = torch.tensor([[5, 6, 7], [0, 4, 5]])


def _count_checks(monkeypatch) -> list:
    calls = []
    real = gpt.check_inputs

    def counting(*args):
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(gpt, "check_inputs", counting)
    monkeypatch.setattr(hf, "check_inputs", counting)
    return calls


def _gpt(device="cpu"):
    torch.manual_seed(0)
    return GPT(CFG).to(device)


def _tiny_gpt2():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=13, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    return hf.HFCausalLM(transformers.GPT2LMHeadModel(config))


@pytest.mark.parametrize("make", [_gpt, _tiny_gpt2], ids=["gpt", "transformers"])
def test_generate_checks_the_prompt_once_not_once_per_token(monkeypatch, make):
    model = make()
    calls = _count_checks(monkeypatch)
    gen = generate(model, PROMPTS, PROMPTS != 0, max_new_tokens=10, generator=torch.Generator().manual_seed(0))
    assert gen.response.shape == (2, 10)
    assert calls == [PROMPTS.shape]  # the prompt, on the first (uncached) step only
    calls.clear()
    model(PROMPTS)  # a forward without a cache is checked every time
    model(PROMPTS)
    assert len(calls) == 2


def test_a_forward_still_names_an_id_outside_the_vocabulary():
    with pytest.raises(ValueError, match="token id 13, outside"):
        _gpt()(torch.tensor([[1, 13]]))


@pytest.mark.cuda
def test_cached_generation_syncs_a_few_times_per_call_not_per_token():
    model = _gpt("cuda")
    prompts = PROMPTS.cuda()
    generate(model, prompts, prompts != 0, max_new_tokens=2)  # warm-up: lazy CUDA initialisation
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            generate(model, prompts, prompts != 0, max_new_tokens=24)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchronizing" in str(w.message)]
    # the prompt's checks (empty rows, the longest, ids and context) sync a few times; one per
    # token was 24 and more
    assert len(syncs) <= 6, [str(w.message) for w in syncs]
