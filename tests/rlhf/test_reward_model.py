"""Bradley-Terry loss and accuracy against a hand computation; training, normalization, saving."""

import math
import re
from dataclasses import asdict

import pytest
import torch

from fastrl.nn.gpt import GPTConfig
from fastrl.rlhf.data import Preference
from fastrl.rlhf.reward_model import (
    HFRewardModel,
    RewardModel,
    RewardModelConfig,
    bradley_terry_loss,
    preference_accuracy,
    read_stats,
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
    cfg = RewardModelConfig(epochs=6, learning_rate=3e-3, eval_fraction=0.2)
    metrics = train_reward_model(model, _pairs(400), tok, cfg)
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


# --------------------------------------------------------------------------- loading untrusted files (issue 12)

TINY = GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=8)


class _RunsCode:
    """Unpickling this calls ``exec``: what a crafted checkpoint does to run its payload."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "rm.pt"
    torch.save({"config": asdict(TINY), "state_dict": _RunsCode(marker)}, path)
    with pytest.raises(ValueError) as info:
        RewardModel.load(path)
    assert not marker.exists(), "loading the checkpoint ran the code in it"
    assert re.match(r".*rm.pt: refused: the file holds a Python object \(exec\)", str(info.value))
    assert "\n" not in str(info.value)


def _good_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = RewardModel(TINY)
    model.save(tmp_path / "good.pt")
    return model, (tmp_path / "good.pt").read_bytes()


def _bad_checkpoints(tmp_path):
    """(name, bytes or an object to torch.save, expected message)."""
    model, good = _good_checkpoint(tmp_path)
    state = model.state_dict()
    return [
        ("empty", b"", r"not a checkpoint written by RewardModel.save \(EOFError"),
        ("random", bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1)).tolist()),
         r"not a checkpoint written by RewardModel.save"),
        ("text", b'{"config": {}, "state_dict": {}}\n', r"not a checkpoint written by RewardModel.save"),
        ("truncated", good[: len(good) // 2], r"not a checkpoint written by RewardModel.save"),
        ("a list", [1, 2, 3], r"not a reward model checkpoint \(RewardModel.save writes a dict"),
        ("no config", {"state_dict": state}, r"not a reward model checkpoint"),
        ("unknown config field", {"config": {**asdict(TINY), "n_expert": 4}, "state_dict": state},
         r"not a valid reward model checkpoint: .*n_expert"),
        ("bad config value", {"config": {**asdict(TINY), "n_head": 3}, "state_dict": state},
         r"not a valid reward model checkpoint: GPTConfig.n_head \(3\) must divide n_embd \(8\)"),
        ("missing weights", {"config": asdict(TINY), "state_dict": {"mean": state["mean"]}},
         r"not a valid reward model checkpoint: Error\(s\) in loading state_dict"),
        ("nan std", {"config": asdict(TINY), "state_dict": {**state, "std": torch.tensor(float("nan"))}},
         r"normalization statistic 'std' must be a finite number, got nan"),
        ("zero std", {"config": asdict(TINY), "state_dict": {**state, "std": torch.tensor(0.0)}},
         r"normalization statistic 'std' must be > 0"),
    ]  # fmt: skip


def test_bad_checkpoint_files_give_one_line_naming_the_file(tmp_path):
    for i, (name, content, message) in enumerate(_bad_checkpoints(tmp_path)):
        path = tmp_path / f"bad{i}.pt"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            torch.save(content, path)
        with pytest.raises(ValueError, match=f"bad{i}.pt: " + message) as info:
            RewardModel.load(path)
        assert type(info.value) is ValueError and "\n" not in str(info.value), name
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        RewardModel.load(tmp_path / "missing.pt")


@pytest.mark.parametrize(("text", "message"), [
    ('{"mean": NaN, "std": 1.0}', r"not valid JSON \(NaN is not a JSON number\)"),
    ('{"mean": 0.5, "std": 1e400}', r"normalization statistic 'std' must be a finite number, got inf"),
    ('{"mean": 0.5, "std": 0}', r"normalization statistic 'std' must be > 0, got 0"),
    ('{"mean": 0.5, "std": "1"}', r"normalization statistic 'std' must be a finite number, got '1'"),
    ('{"mean": 1' + "0" * 400 + ', "std": 1}', r"normalization statistic 'mean' must be a finite number"),
    ('{"mean": 0.5}', r"missing field 'std'"),
    ("[0.5, 1.0]", r"expected a JSON object with 'mean' and 'std'"),
    ('{"mean": 0.5,', r"not valid JSON"),
])  # fmt: skip
def test_bad_reward_statistics_files_are_named(tmp_path, text, message):
    path = tmp_path / HFRewardModel.STATS_FILE
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": " + message):
        read_stats(path)


def test_reward_statistics_round_trip_with_a_byte_order_mark(tmp_path):
    path = tmp_path / HFRewardModel.STATS_FILE
    path.write_bytes(b'\xef\xbb\xbf{"mean": -0.25, "std": 2}\n')
    assert read_stats(path) == (-0.25, 2.0)
