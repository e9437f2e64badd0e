"""Bradley-Terry loss and accuracy against a hand computation; training, normalization, saving."""

import math

import pytest
import torch

from fastrl.nn.gpt import GPTConfig
from fastrl.rlhf.data import Preference
from fastrl.rlhf.reward_model import (
    RewardModel,
    RewardModelConfig,
    bradley_terry_loss,
    preference_accuracy,
    train_reward_model,
)
from fastrl.rlhf.tokenizer import CharTokenizer


def test_bradley_terry_loss_by_hand():
    rc = torch.tensor([2.0, 0.0, -1.0])
    rr = torch.tensor([1.0, 0.0, 1.0])
    # -log sigmoid(d) = log(1 + exp(-d)) with d = 1, 0, -2
    expected = (math.log(1 + math.exp(-1)) + math.log(2) + math.log(1 + math.exp(2))) / 3
    assert bradley_terry_loss(rc, rr).item() == pytest.approx(expected, rel=1e-6)
    # a margin of 0.5 asks for more: d = 0.5, -0.5, -2.5
    expected = sum(math.log(1 + math.exp(-d)) for d in (0.5, -0.5, -2.5)) / 3
    assert bradley_terry_loss(rc, rr, 0.5).item() == pytest.approx(expected, rel=1e-6)
    # ties count as wrong: only the first pair is strictly right
    assert preference_accuracy(rc, rr).item() == pytest.approx(1 / 3)


def _pairs(n, seed=0):
    """Raters prefer responses with more 'a's."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for i in range(n):
        k = torch.randint(1, 6, (2,), generator=g).tolist()
        if k[0] == k[1]:
            continue
        hi, lo = max(k), min(k)
        pairs.append(Preference("x", "a" * hi + "b" * (6 - hi), "a" * lo + "b" * (6 - lo), source=f"pair {i}"))
    return pairs


def test_training_learns_a_simple_preference_and_saves_its_statistics(tmp_path):
    tok = CharTokenizer("abx")
    torch.manual_seed(0)
    model = RewardModel(GPTConfig(vocab_size=tok.vocab_size, block_size=12, n_layer=1, n_head=2, n_embd=16))
    metrics = train_reward_model(model, _pairs(400), tok, RewardModelConfig(epochs=6, lr=3e-3, eval_fraction=0.2))
    assert metrics["eval_accuracy"] >= 0.9
    assert metrics["std"] > 0 and model.std.item() == pytest.approx(metrics["std"])
    model.save(tmp_path / "rm.pt")
    loaded = RewardModel.load(tmp_path / "rm.pt")
    assert loaded.mean.item() == model.mean.item() and loaded.std.item() == model.std.item()
    ids = torch.tensor([[4, 2, 2, 1]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    torch.testing.assert_close(loaded.normalized(ids, mask), (model(ids, mask) - model.mean) / model.std)


def test_mismatched_tokenizer_and_model_vocab():
    model = RewardModel(GPTConfig(vocab_size=4, block_size=12, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match="tokenizer has 5 ids but the reward model embeds only 4"):
        train_reward_model(model, _pairs(10), CharTokenizer("abx"), RewardModelConfig())
