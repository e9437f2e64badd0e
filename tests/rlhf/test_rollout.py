"""The rollout pieces PPO and GRPO share, against independent oracles: per-token log-probs and
values read one position before each response token (checked against the model run on each
prefix alone), and masked mean / whitening / sequence KL against hand-worked numbers, with
garbage at the masked positions."""

import math

import pytest
import torch

from fastrl.nn.gpt import GPT, Generation, ScalarGPT
from fastrl.rlhf.rollout import (
    masked_mean,
    masked_whiten,
    response_hidden,
    response_logprobs,
    response_values,
    sequence_kl,
)
from tests.rlhf._tiny import CFG


def _generation():
    """A hand-made batch: left-padded prompts (P = 4) and responses (N = 4) ending at different
    lengths; padding (id 0) after the stop token (id 1)."""
    ids = torch.tensor([
        [0, 2, 3, 6, 4, 5, 1, 0],   # response 3 tokens
        [2, 5, 5, 6, 3, 3, 2, 4],   # 4 tokens, no stop
        [0, 0, 4, 6, 1, 0, 0, 0],   # 1 token
    ])  # fmt: skip
    mask = torch.tensor([
        [0, 1, 1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 0, 0, 0],
    ]).bool()  # fmt: skip
    return Generation(ids, mask, prompt_len=4)


def _models(seed=0):
    torch.manual_seed(seed)
    policy = GPT(CFG).double()
    critic = ScalarGPT(CFG).double()
    with torch.no_grad():  # a head far from 0, so that values differ clearly between positions
        critic.head.weight.normal_(0, 1.0)
    return policy, critic


def _prefix(gen, b, t):
    """The real tokens before response token t of row b, as a batch of one."""
    end = gen.prompt_len + t
    return gen.ids[b, :end][gen.mask[b, :end]][None]


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_response_logprobs_score_each_token_given_the_tokens_before_it(temperature):
    policy, _ = _models()
    gen = _generation()
    got = response_logprobs(policy, gen, temperature)
    assert got.shape == (3, 4) and got.dtype == torch.float64
    for b in range(3):
        for t in range(4):
            if not gen.response_mask[b, t]:
                assert got[b, t].item() == 0.0
                continue
            # the model on the prefix alone: its last position predicts token t
            logits = policy(_prefix(gen, b, t))[0, -1] / temperature
            expected = torch.log_softmax(logits, -1)[gen.response[b, t]]
            assert got[b, t].item() == pytest.approx(expected.item(), abs=1e-12), (b, t)


def test_response_values_are_the_values_of_the_state_before_each_token():
    _, critic = _models()
    gen = _generation()
    got = response_values(critic, gen)
    assert got.shape == (3, 4)
    for b in range(3):
        for t in range(4):
            if gen.response_mask[b, t]:
                expected = critic(_prefix(gen, b, t))[0, -1]
                assert got[b, t].item() == pytest.approx(expected.item(), abs=1e-12), (b, t)
    # rows: the same values for a subset of rows, in its order
    rows = torch.tensor([2, 0])
    valid = gen.response_mask[rows]
    torch.testing.assert_close(response_values(critic, gen, rows)[valid], got[rows][valid])


def test_response_hidden_of_rows_gives_those_rows_logprobs():
    policy, _ = _models()
    gen = _generation()
    rows = torch.tensor([2, 1])
    hidden = response_hidden(policy, gen, rows)
    logp = torch.log_softmax(policy.lm_head(hidden), -1).gather(-1, gen.response[rows, :, None])[..., 0]
    valid = gen.response_mask[rows]
    torch.testing.assert_close(logp[valid], response_logprobs(policy, gen, 1.0)[rows][valid])


# x: valid entries 1, 2, 3, 4 (mean 2.5); the others are garbage that must not count
X = torch.tensor([[1.0, 2.0, 1e6], [3.0, float("nan"), float("inf")], [4.0, -7.0, 5.0]], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 0, 0]]).bool()


def test_masked_mean_by_hand():
    assert masked_mean(X, MASK).item() == 2.5
    assert masked_mean(X, torch.zeros_like(MASK)).item() == 0.0  # nothing valid: 0, not NaN


def test_masked_whiten_by_hand():
    # mean 2.5; variance over the valid entries, divided by their count (4, not 3):
    # (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25
    got = masked_whiten(X, MASK)
    scale = 1 / math.sqrt(1.25 + 1e-8)
    expected = torch.tensor([[-1.5 * scale, -0.5 * scale, 0.0], [0.5 * scale, 0.0, 0.0], [1.5 * scale, 0.0, 0.0]],
                            dtype=torch.float64)  # fmt: skip
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-14)
    # eps bounds the scale of a batch with no spread: 0 out, not NaN
    same = torch.where(MASK, 3.0, X)
    assert torch.equal(masked_whiten(same, MASK), torch.zeros_like(X))
    assert torch.equal(masked_whiten(X, torch.zeros_like(MASK)), torch.zeros_like(X))
    assert masked_whiten(X, MASK, eps=1.0)[2, 0].item() == pytest.approx(1.5 / math.sqrt(2.25))


def test_sequence_kl_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, 9.0, float("nan")]])
    ref = torch.tensor([[-1.5, -1.0, -3.0], [-1.0, float("-inf"), 4.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]]).bool()
    # row 0: 0.5 - 1.0 + 0.0; row 1: 0.5 (the rest is padding)
    torch.testing.assert_close(sequence_kl(logp, ref, mask), torch.tensor([-0.5, 0.5]))
    assert sequence_kl(logp, ref, torch.zeros_like(mask)).tolist() == [0.0, 0.0]
