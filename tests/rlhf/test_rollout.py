"""The rollout pieces PPO and GRPO share, against independent oracles: per-token log-probs and
values read one position before each response token (checked against the model run on each
prefix alone), and the sequence KL against hand-worked numbers, with garbage at the masked
positions (masked mean and whitening: tests/utils/test_stats.py)."""


from types import SimpleNamespace

import pytest
import torch

from fastrl.nn.gpt import GPT, Generation, ScalarGPT
from fastrl.rlhf.rollout import (
    response_hidden,
    response_logprobs,
    response_values,
    sequence_kl,
    train_on_prompts,
)
from tests.rlhf._tiny import CFG, TOK


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
def test_sequence_kl_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, 9.0, float("nan")]])
    ref = torch.tensor([[-1.5, -1.0, -3.0], [-1.0, float("-inf"), 4.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]]).bool()
    # row 0: 0.5 - 1.0 + 0.0; row 1: 0.5 (the rest is padding)
    torch.testing.assert_close(sequence_kl(logp, ref, mask), torch.tensor([-0.5, 0.5]))
    assert sequence_kl(logp, ref, torch.zeros_like(mask)).tolist() == [0.0, 0.0]


class FakeTrainer:
    """What ``train_on_prompts`` needs of a trainer; ``step`` records the prompts it is given."""

    def __init__(self, block_size=16, max_new_tokens=12):
        self.tokenizer, self.device = TOK, torch.device("cpu")
        self.policy = SimpleNamespace(cfg=SimpleNamespace(block_size=block_size))
        self.cfg = SimpleNamespace(max_new_tokens=max_new_tokens)
        self.cpu_generator = torch.Generator().manual_seed(0)
        self.batches = []

    def step(self, ids, mask):
        self.batches.append([TOK.decode(row[m].tolist()) for row, m in zip(ids, mask)])
        return {}, None


def test_train_on_prompts_draws_batches_from_every_prompt():
    trainer, steps = FakeTrainer(), []
    prompts = ["abc=", "c=", "dd="]  # 3 prompts, 4 columns wide once padded
    train_on_prompts(trainer, prompts, 50, 4, on_step=lambda it, metrics, gen: steps.append(it))
    assert steps == list(range(50)) and all(len(batch) == 4 for batch in trainer.batches)
    drawn = [p for batch in trainer.batches for p in batch]
    assert set(drawn) == set(prompts)  # 200 uniform draws: each prompt is drawn


def test_train_on_prompts_takes_prompts_that_just_fit():
    # context 16, 12 new tokens: prompts of 4 tokens fit, 5 do not
    trainer = FakeTrainer(block_size=16, max_new_tokens=12)
    train_on_prompts(trainer, ["abc=", "a="], 3, 2)
    assert len(trainer.batches) == 3
    with pytest.raises(ValueError, match="prompt 0 has 5 tokens"):
        train_on_prompts(trainer, ["abcd="], 1, 1)
