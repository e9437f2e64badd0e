"""DPO: the loss by hand, sequence log-probs against full logits, the pair encoding, bad pairs,
and a few steps on synthetic preferences raising the chosen-vs-rejected margin."""

import math
import random

import pytest
import torch

from fastrl.nn.gpt import GPT
from fastrl.rlhf.data import Preference
from fastrl.rlhf.dpo import DPOConfig, dpo_loss, encode_dpo_pairs, sequence_logprobs, train_dpo
from fastrl.rlhf.rollout import frozen_copy
from fastrl.utils.config import ConfigError
from tests.rlhf._tiny import CFG, TOK


def test_loss_by_hand():
    # pair 0: beta * ((-1 + 2) - (-3 + 2)) = 0.5 * 2 = 1; pair 1: 0.5 * ((-2 + 1) - (-1 + 1)) = -0.5
    loss, margins = dpo_loss(torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0]),
                             torch.tensor([-2.0, -1.0]), torch.tensor([-2.0, -1.0]), beta=0.5)  # fmt: skip
    assert margins.tolist() == [1.0, -0.5]
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(0.5))) / 2  # -log sigmoid(m)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_pairs_mark_each_response_and_its_eos():
    batch = encode_dpo_pairs([Preference("ab=", "c", "dd"), Preference("b=", "ac", "c")], TOK, 16)
    a, b, c, d, eq = TOK.encode("abcd=")
    eos = TOK.eos_id
    assert batch.ids.tolist() == [[a, b, eq, c, eos, 0], [b, eq, a, c, eos, 0],  # chosen rows
                                  [a, b, eq, d, d, eos], [b, eq, c, eos, 0, 0]]  # rejected rows
    assert batch.response_mask.int().tolist() == [[0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0],
                                                  [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]]  # fmt: skip
    assert len(batch) == 2 and batch.select(torch.tensor([1])).ids.tolist() == [batch.ids[1].tolist(),
                                                                                 batch.ids[3].tolist()]


def test_identical_chosen_and_rejected_is_an_error_naming_the_pair():
    pairs = [Preference("ab=", "c", "d"), Preference("b=", "cc", "cc", source="prefs.jsonl:2")]
    with pytest.raises(ValueError, match=r"prefs.jsonl:2: chosen and rejected are identical \('cc'\)"):
        encode_dpo_pairs(pairs, TOK, 16)
    with pytest.raises(ValueError, match=r"pair 0: chosen and rejected are identical"):
        train_dpo(GPT(CFG), [Preference("a=", "b", "b")], TOK, DPOConfig())


def test_sequence_logprobs_match_full_logits():
    torch.manual_seed(0)
    model = GPT(CFG).double()
    batch = encode_dpo_pairs([Preference("ab=", "c", "dd"), Preference("b=", "ac", "c")], TOK, 16)
    got = sequence_logprobs(model, batch.ids, batch.mask, batch.response_mask)
    logprobs = torch.log_softmax(model(batch.ids, batch.mask), -1)
    expected = []
    for row in range(4):  # the log-prob of each response token (and the EOS) given what precedes it
        cols = [t for t in range(1, batch.ids.shape[1]) if batch.response_mask[row, t]]
        expected.append(sum(logprobs[row, t - 1, batch.ids[row, t]].item() for t in cols))
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))


def _synthetic_pairs(n, seed):
    """The preferred response repeats the prompt's first letter; the rejected one is another
    letter (hand-written rule, so that a margin can only grow by learning it)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        prompt = "".join(rng.choice("abcd") for _ in range(rng.randint(1, 3)))
        other = rng.choice([c for c in "abcd" if c != prompt[0]])
        k = rng.randint(1, 3)
        pairs.append(Preference(prompt + "=", prompt[0] * k, other * k))
    return pairs


def _margin(policy, reference, pairs, beta):
    batch = encode_dpo_pairs(pairs, TOK, CFG.block_size)
    with torch.no_grad():
        pol, ref = (sequence_logprobs(m, batch.ids, batch.mask, batch.response_mask) for m in (policy, reference))
    n = len(batch)
    return dpo_loss(pol[:n], pol[n:], ref[:n], ref[n:], beta)[1].mean().item()


def test_a_few_steps_raise_the_margin_on_synthetic_preferences():
    torch.manual_seed(0)
    policy = GPT(CFG)
    reference = frozen_copy(policy)
    train, held_out = _synthetic_pairs(64, 0), _synthetic_pairs(32, 1)
    assert _margin(policy, reference, held_out, 0.5) == 0  # the policy is the reference
    steps = []
    metrics = train_dpo(policy, train, TOK, DPOConfig(beta=0.5, learning_rate=1e-2, epochs=4, batch_size=16),
                        progress=steps.append)  # fmt: skip
    assert len(steps) == 4 * 4
    assert metrics["margin"] > 0.2 and metrics["accuracy"] > 0.6 and metrics["loss"] < math.log(2)
    assert _margin(policy, reference, held_out, 0.5) > 0.3  # generalizes to unseen pairs


def test_config_is_checked():
    with pytest.raises(ConfigError, match="beta"):
        DPOConfig(beta=0.0)
    with pytest.raises(ConfigError, match="cfg must be a DPOConfig"):
        train_dpo(GPT(CFG), [Preference("a=", "b", "c")], TOK, {"beta": 0.1})


def test_sequence_logprobs_of_a_transformers_policy_match_its_own_logits():
    transformers = pytest.importorskip("transformers")
    from fastrl.nn.hf import HFCausalLM

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=TOK.vocab_size, n_positions=32, n_embd=16, n_layer=2, n_head=2)
    lm = transformers.GPT2LMHeadModel(config).double().eval()
    batch = encode_dpo_pairs([Preference("ab=", "c", "dd"), Preference("b=", "ac", "c")], TOK, 32)
    got = sequence_logprobs(HFCausalLM(lm), batch.ids, batch.mask, batch.response_mask)
    with torch.no_grad():  # right padding: the default positions are the real ones
        logprobs = torch.log_softmax(lm(input_ids=batch.ids, attention_mask=batch.mask.long()).logits, -1)
    taken = logprobs[:, :-1].gather(-1, batch.ids[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(got, torch.where(batch.response_mask[:, 1:], taken, 0).sum(1))
    pairs = _synthetic_pairs(8, 2)
    metrics = train_dpo(HFCausalLM(lm.float()), pairs, TOK, DPOConfig(epochs=1, batch_size=4))
    assert math.isfinite(metrics["loss"])
