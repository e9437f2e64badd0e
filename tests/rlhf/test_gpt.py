"""The small GPT: padding invariance, KV-cache sampling vs full recompute, reward heads, errors."""

import pytest
import torch

from fastrl.nn.gpt import GPT, GPTConfig, ScalarGPT, generate, last_token_index, left_align

CFG = GPTConfig(vocab_size=13, block_size=24, n_layer=2, n_head=2, n_embd=16)


def _model(cls=GPT, seed=0):
    torch.manual_seed(seed)
    return cls(CFG).double()


def _prompts():
    ids = torch.tensor([[5, 6, 7, 8, 9], [0, 0, 4, 5, 6], [3, 4, 0, 0, 0], [0, 7, 8, 0, 0]])
    return ids, ids != 0


def test_logits_do_not_depend_on_padding():
    model = _model()
    seq = torch.tensor([[5, 6, 7, 8]])
    plain = model(seq)
    for ids, mask in [
        (torch.tensor([[0, 0, 5, 6, 7, 8]]), torch.tensor([[0, 0, 1, 1, 1, 1]]).bool()),
        (torch.tensor([[5, 6, 7, 8, 0, 0]]), torch.tensor([[1, 1, 1, 1, 0, 0]]).bool()),
    ]:
        torch.testing.assert_close(model(ids, mask)[mask], plain[0])


@pytest.mark.parametrize("options", [{}, {"top_k": 4}, {"top_p": 0.8, "temperature": 0.7}, {"temperature": 0}])
def test_kv_cache_sampling_equals_full_recompute(options):
    model = _model()
    ids, mask = _prompts()
    runs = [generate(model, ids, mask, max_new_tokens=12, stop_token=3, use_cache=cache,
                     generator=torch.Generator().manual_seed(7), **options)
            for cache in (True, False)]  # fmt: skip
    assert torch.equal(runs[0].ids, runs[1].ids)
    assert torch.equal(runs[0].mask, runs[1].mask)


def test_left_and_right_padded_prompts_give_the_same_samples():
    model = _model()
    right = generate(model, torch.tensor([[5, 6, 0, 0]]), torch.tensor([[1, 1, 0, 0]]).bool(),
                     max_new_tokens=8, generator=torch.Generator().manual_seed(1))  # fmt: skip
    left = generate(model, torch.tensor([[0, 5, 6]]), torch.tensor([[0, 1, 1]]).bool(),
                    max_new_tokens=8, generator=torch.Generator().manual_seed(1))  # fmt: skip
    assert torch.equal(right.response, left.response)


def test_stop_token_ends_a_row_and_masks_the_rest():
    model = _model()
    ids, mask = _prompts()
    gen = generate(model, ids, mask, max_new_tokens=16, stop_token=3, pad_token=0,
                   generator=torch.Generator().manual_seed(3))  # fmt: skip
    for row, m in zip(gen.response, gen.response_mask):
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any()  # a prefix
        assert (row[n:] == 0).all()
        assert (row[: n - 1] != 3).all()  # nothing after the first stop token is kept
        assert row[n - 1] == 3 or n == gen.response.shape[1]


def test_left_align_keeps_token_order():
    ids, mask = left_align(*_prompts())
    assert ids.tolist()[2] == [0, 0, 0, 3, 4]
    assert ids.tolist()[3] == [0, 0, 0, 7, 8]
    assert mask[:, -1].all()


def test_score_reads_the_last_real_token():
    model = _model(ScalarGPT)
    ids, mask = _prompts()
    values = model(ids, mask)
    last = last_token_index(mask)
    assert last.tolist() == [4, 4, 1, 2]
    torch.testing.assert_close(model.score(ids, mask), values[torch.arange(4), last])
    torch.testing.assert_close(model.score(ids[2:3, :2], mask[2:3, :2]), values[2:3, 1])


def test_generate_rejects_empty_prompts_and_responses_past_the_context():
    model = _model()
    ids, mask = _prompts()
    mask[1] = False
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(model, ids, mask, max_new_tokens=4)
    with pytest.raises(ValueError, match="prompt 0 has 5 tokens.*context of 24"):
        generate(model, *_prompts(), max_new_tokens=20)


def test_forward_rejects_sequences_longer_than_the_context():
    with pytest.raises(ValueError, match="sequence 0 has 30 tokens"):
        _model()(torch.ones(1, 30, dtype=torch.long))


def test_ids_outside_the_vocabulary_are_named_not_an_index_error():
    model = _model()  # vocab_size 13
    with pytest.raises(ValueError, match=r"sequence 1 holds token id 13, outside the model's vocabulary \[0, 13\)"):
        model(torch.tensor([[1, 2, 3], [4, 13, 5]]))
    with pytest.raises(ValueError, match=r"sequence 0 holds token id -2, outside"):
        ScalarGPT(CFG)(torch.tensor([[1, -2]]))
    ids, mask = _prompts()
    ids[2, 1] = 99
    with pytest.raises(ValueError, match=r"sequence 2 holds token id 99"):
        generate(model, ids, mask, max_new_tokens=2)


@pytest.mark.parametrize(("options", "message"), [
    ({"max_new_tokens": 0}, r"max_new_tokens must be an int >= 1, got 0"),
    ({"max_new_tokens": 2.0}, r"max_new_tokens must be an int >= 1, got 2.0"),
    ({"temperature": -1.0}, r"temperature must be a finite number >= 0 \(0: greedy\), got -1.0"),
    ({"temperature": float("nan")}, r"temperature must be a finite number >= 0"),
    ({"top_k": 0}, r"top_k must be None or an int >= 1, got 0"),
    ({"top_p": -0.1}, r"top_p must be None or a number in \[0, 1\], got -0.1"),
    ({"top_p": 1.5}, r"top_p must be None or a number in \[0, 1\], got 1.5"),
    ({"stop_token": 13}, r"stop_token must be a token id in \[0, 13\), got 13"),
    ({"pad_token": -1}, r"pad_token must be a token id in \[0, 13\), got -1"),
])  # fmt: skip
def test_generate_rejects_bad_options(options, message):
    ids, mask = _prompts()
    with pytest.raises(ValueError, match=message):
        generate(_model(), ids, mask, **{"max_new_tokens": 3, **options})


def test_generate_rejects_bad_prompt_tensors():
    ids, mask = _prompts()
    with pytest.raises(TypeError, match=r"prompt_ids must be a 2-D integer tensor"):
        generate(_model(), ids[0], max_new_tokens=2)
    with pytest.raises(TypeError, match=r"prompt_ids must be a 2-D integer tensor"):
        generate(_model(), ids.float(), max_new_tokens=2)
    with pytest.raises(ValueError, match=r"prompt_mask must be a tensor of the shape of prompt_ids \(4, 5\)"):
        generate(_model(), ids, mask[:, :3], max_new_tokens=2)


@pytest.mark.parametrize(("fields", "error", "message"), [
    ({"vocab_size": 0}, ValueError, r"GPTConfig.vocab_size must be >= 1, got 0"),
    ({"vocab_size": 13, "block_size": -4}, ValueError, r"GPTConfig.block_size must be >= 1, got -4"),
    ({"vocab_size": 13, "n_embd": 64.0}, TypeError, r"GPTConfig.n_embd must be an int, got 64.0 \(float\)"),
    ({"vocab_size": "13"}, TypeError, r"GPTConfig.vocab_size must be an int, got '13' \(str\)"),
    ({"vocab_size": 13, "n_head": 5, "n_embd": 16}, ValueError, r"GPTConfig.n_head \(5\) must divide n_embd \(16\)"),
])  # fmt: skip
def test_gpt_config_is_validated(fields, error, message):
    with pytest.raises(error, match=message):
        GPTConfig(**fields)
