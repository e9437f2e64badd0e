"""Preference JSONL, rankings, prompt encoding and the errors that name the bad record."""

import json

import pytest
import torch

from fastrl.rlhf.data import encode_pairs, encode_prompts, load_preferences, ranking_to_pairs
from fastrl.rlhf.tokenizer import CharTokenizer

TOK = CharTokenizer("abcdefgh=")


def _write(tmp_path, records):
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def test_pairs_and_rankings(tmp_path):
    path = _write(tmp_path, [
        {"prompt": "ab=", "chosen": "aa", "rejected": "cc", "margin": 0.5},
        "",
        {"prompt": "cd=", "ranking": ["cd", "ca", "hh"]},
    ])  # fmt: skip
    pairs = load_preferences(path)
    assert [(p.prompt, p.chosen, p.rejected, p.margin) for p in pairs] == [
        ("ab=", "aa", "cc", 0.5),
        ("cd=", "cd", "ca", 0.0),
        ("cd=", "cd", "hh", 0.0),
        ("cd=", "ca", "hh", 0.0),
    ]
    assert pairs[1].source.endswith("prefs.jsonl:3")
    assert len(ranking_to_pairs("p", ["1", "2", "3", "4"])) == 6


@pytest.mark.parametrize(("record", "message"), [
    ({"prompt": "ab=", "chosen": "aa"}, r"prefs.jsonl:2: missing field 'rejected'"),
    ({"chosen": "aa", "rejected": "b"}, r"prefs.jsonl:2: missing field 'prompt'"),
    ({"prompt": "ab=", "chosen": 3, "rejected": "b"}, r"prefs.jsonl:2: field 'chosen' must be a string"),
    ({"prompt": "ab=", "ranking": ["a"]}, r"prefs.jsonl:2: 'ranking' must be a list of at least 2"),
    ("{not json", r"prefs.jsonl:2: not valid JSON"),
])  # fmt: skip
def test_bad_records_are_named(tmp_path, record, message):
    path = _write(tmp_path, [{"prompt": "ab=", "chosen": "a", "rejected": "b"}, record])
    with pytest.raises(ValueError, match=message):
        load_preferences(path)


def test_encode_pairs_appends_eos_and_names_records_that_do_not_fit(tmp_path):
    path = _write(tmp_path, [{"prompt": "ab=", "chosen": "a", "rejected": "bbb"},
                             {"prompt": "ab=", "chosen": "a", "rejected": "bbbbbbbbbb"}])  # fmt: skip
    pairs = load_preferences(path)
    batch = encode_pairs(pairs[:1], TOK, block_size=8)
    assert batch.chosen.tolist() == [[2, 3, 10, 2, TOK.eos_id]]
    assert batch.rejected_mask.sum().item() == 7
    with pytest.raises(ValueError, match=r"prefs.jsonl:2: prompt \+ rejected response is 14 tokens.*context of 8"):
        encode_pairs(pairs, TOK, block_size=8)
    with pytest.raises(ValueError, match="pair 0: empty prompt"):
        encode_pairs([type(pairs[0])("", "a", "b")], TOK, block_size=8)


def test_encode_prompts_from_strings_or_tensors():
    ids, mask = encode_prompts(["ab=", "c="], TOK)
    assert ids.tolist() == [[2, 3, 10], [0, 4, 10]]
    assert mask.tolist() == [[True] * 3, [False, True, True]]
    ids2, mask2 = encode_prompts([torch.tensor([2, 3, 10]), torch.tensor([4, 10])])
    assert torch.equal(ids, ids2) and torch.equal(mask, mask2)
    with pytest.raises(ValueError, match="no prompts"):
        encode_prompts([], TOK)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        encode_prompts(["ab=", ""], TOK)
    with pytest.raises(ValueError, match="character 'z'"):
        encode_prompts(["az"], TOK)
