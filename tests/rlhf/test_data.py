"""Preference JSONL, rankings, prompt encoding and the errors that name the bad record."""

import json

import pytest
import torch

from fastrl.rlhf.data import (
    Preference,
    encode_pairs,
    encode_prompts,
    load_preferences,
    ranking_to_pairs,
)
from fastrl.rlhf.tokenizer import CharTokenizer

TOK = CharTokenizer("abcdefgh=")


GOOD = {"prompt": "ab=", "chosen": "a", "rejected": "b"}


def _write(tmp_path, records):
    path = tmp_path / "prefs.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def _write_bytes(tmp_path, data: bytes):
    path = tmp_path / "prefs.jsonl"
    path.write_bytes(data)
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
    empty = Preference("ab=", "a", "b")
    empty.prompt = ""  # changed after construction (which rejects an empty prompt)
    with pytest.raises(ValueError, match="pair 0: empty prompt"):
        encode_pairs([empty], TOK, block_size=8)


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


# --------------------------------------------------------------------------- hardening (issue 12, item 16)

GOOD_LINE = json.dumps(GOOD)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400])
def test_non_finite_margins_are_rejected(tmp_path, literal):
    # Python's json reads NaN, Infinity and 1e400 (as inf) happily; a margin like that trains into NaN
    path = _write(tmp_path, [GOOD_LINE, GOOD_LINE[:-1] + f', "margin": {literal}}}'])
    with pytest.raises(ValueError, match=r"prefs.jsonl:2: field 'margin' must be a finite number"):
        load_preferences(path)


@pytest.mark.parametrize("literal", ["NaN", "-Infinity", "1e999"])
def test_non_finite_numbers_anywhere_in_a_record_are_rejected(tmp_path, literal):
    line = GOOD_LINE[:-1] + f', "meta": {{"scores": [1.5, {literal}]}}}}'
    path = _write(tmp_path, [line])
    with pytest.raises(ValueError, match=r"prefs.jsonl:1: field 'meta'\['scores'\]\[1\] must be a finite number"):
        load_preferences(path)


def test_finite_margins_of_every_json_spelling_are_read(tmp_path):
    lines = [GOOD_LINE[:-1] + f', "margin": {m}}}' for m in ("0", "-2", "1.5e2", "1E-3", "1.7976931348623157e308")]
    assert [p.margin for p in load_preferences(_write(tmp_path, lines))] == [0.0, -2.0, 150.0, 0.001,
                                                                             1.7976931348623157e308]


def test_invalid_utf8_names_the_file_and_the_line(tmp_path):
    latin1 = '{"prompt": "caf\u00e9=", "chosen": "a", "rejected": "b"}'.encode("latin-1")
    path = _write_bytes(tmp_path, GOOD_LINE.encode() + b"\n" + latin1 + b"\n")
    with pytest.raises(ValueError, match=r"prefs.jsonl:2: not valid UTF-8 \(byte 0xe9 at byte 16") as info:
        load_preferences(path)
    assert type(info.value) is ValueError  # not a bare UnicodeDecodeError


def test_a_utf8_byte_order_mark_is_accepted_at_the_start_only(tmp_path):
    plain = load_preferences(_write_bytes(tmp_path, f"{GOOD_LINE}\n{GOOD_LINE}\n".encode()))
    with_bom = load_preferences(_write_bytes(tmp_path, f"\ufeff{GOOD_LINE}\r\n{GOOD_LINE}\r\n".encode()))
    assert [(p.prompt, p.chosen, p.rejected, p.margin) for p in with_bom] == [
        (p.prompt, p.chosen, p.rejected, p.margin) for p in plain
    ]
    with pytest.raises(ValueError, match=r"prefs.jsonl:2: a byte-order mark"):
        load_preferences(_write_bytes(tmp_path, f"{GOOD_LINE}\n\ufeff{GOOD_LINE}\n".encode()))
    utf16 = f"{GOOD_LINE}\n".encode("utf-16")  # starts with the UTF-16 byte-order mark
    with pytest.raises(ValueError, match=r"prefs.jsonl:1: not valid UTF-8 .*UTF-16 or UTF-32 byte-order mark"):
        load_preferences(_write_bytes(tmp_path, utf16))


@pytest.mark.parametrize(("line", "message"), [
    ("[1, 2]", r":2: expected a JSON object, got an array"),
    ('"text"', r":2: expected a JSON object, got a string"),
    ("NaN", r":2: expected a JSON object, got NaN"),
    ('{"prompt": null, "chosen": "a", "rejected": "b"}', r":2: field 'prompt' must be a string, got null"),
    ('{"prompt": "ab=", "chosen": "a", "rejected": {}}', r":2: field 'rejected' must be a string, got an object"),
    ('{"prompt": "", "chosen": "a", "rejected": "b"}', r":2: field 'prompt' is empty"),
    ('{"prompt": "ab=", "chosen": "a", "rejected": "b", "margin": "1"}',
     r":2: field 'margin' must be a number, got a string"),
    ('{"prompt": "ab=", "chosen": "a", "rejected": "b", "margin": true}',
     r":2: field 'margin' must be a number, got true"),
    ('{"prompt": "ab=", "chosen": "a", "rejected": "b", "margin": null}',
     r":2: field 'margin' must be a number, got null"),
    ('{"prompt": "ab=", "chosen": "a\\ud800", "rejected": "b"}', r":2: field 'chosen' is not valid Unicode"),
    ('{"prompt": "ab=", "ranking": "ab"}', r":2: 'ranking' must be a list of at least 2 strings, got a string"),
    ('{"prompt": "ab=", "ranking": ["a", 3]}', r":2: field 'ranking\[1\]' must be a string, got the number 3"),
    ('{"prompt": "ab=", "ranking": ["a", "b"], "chosen": "a"}', r":2: field 'chosen' cannot be combined"),
    ('{"prompt": "ab=", "ranking": ["a", "b"], "margin": 1}', r":2: field 'margin' cannot be combined"),
    ('{"prompt": "ab=", "chosen": "a", "rejected": "b"', r":2: not valid JSON \(Expecting ',' delimiter"),
    ("[" * 100_000, r":2: not valid JSON"),
    ("1" * 5000, r":2: expected a JSON object, got 111111111111\.\.\. \(an integer of 5000 digits\)"),
    ('{"prompt": "ab=", "chosen": "a", "rejected": "b", "margin": -' + "9" * 5000 + "}",
     r":2: field 'margin' must be a finite number, got -99999999999\.\.\. \(an integer of 5000 digits\)"),
])  # fmt: skip
def test_every_bad_record_names_the_file_the_line_and_the_field(tmp_path, line, message):
    path = _write(tmp_path, [GOOD_LINE, line, GOOD_LINE])
    with pytest.raises(ValueError, match="prefs.jsonl" + message) as info:
        load_preferences(path)
    assert type(info.value) is ValueError and "\n" not in str(info.value)


def test_empty_files_are_named(tmp_path):
    for data in (b"", b"\n  \n", b"\xef\xbb\xbf"):
        with pytest.raises(ValueError, match=r"prefs.jsonl: no preference records"):
            load_preferences(_write_bytes(tmp_path, data))


def test_preferences_are_checked_at_construction():
    with pytest.raises(ValueError, match=r"preference: field 'margin' must be a finite number, got nan"):
        Preference("ab=", "a", "b", margin=float("nan"))
    with pytest.raises(ValueError, match=r"x.jsonl:3: field 'chosen' must be a string"):
        Preference("ab=", None, "b", source="x.jsonl:3")
    with pytest.raises(ValueError, match=r"field 'prompt' is empty"):
        Preference("", "a", "b")
    pair = Preference("ab=", "a", "b", source="demo pair 4")
    pair.margin = float("inf")  # changed after construction: encode_pairs checks again
    with pytest.raises(ValueError, match=r"demo pair 4: field 'margin' must be a finite number, got inf"):
        encode_pairs([pair], TOK, block_size=8)
    with pytest.raises(ValueError, match=r"'ranking' must be a list of at least 2"):
        ranking_to_pairs("ab=", ["a"])


# --------------------------------------------------------------------------- hardening (issue 12, item 17)


def test_prompt_token_ids_outside_the_vocabulary_are_named():
    # TOK has 11 ids (pad, EOS and 9 characters)
    with pytest.raises(ValueError, match=r"prompt 1: token id 11 at position 1 is outside the vocabulary \[0, 11\)"):
        encode_prompts([torch.tensor([2, 3]), torch.tensor([4, 11])], TOK)
    with pytest.raises(ValueError, match=r"prompt 0: token id -1 at position 0 is outside the vocabulary"):
        encode_prompts([torch.tensor([-1, 3])], TOK)
    with pytest.raises(ValueError, match=r"prompt 0: token id -3 .*non-negative"):
        encode_prompts([torch.tensor([-3])])  # no tokenizer: the vocabulary size is unknown
    with pytest.raises(ValueError, match=r"prompt 0: token id 7 at position 2 is outside the vocabulary \[0, 5\)"):
        encode_prompts([torch.tensor([1, 2, 7])], vocab_size=5)
    ids, _ = encode_prompts([torch.tensor([0, 10])], TOK)  # both ends of the vocabulary are fine
    assert ids.tolist() == [[0, 10]]


def test_encode_prompts_wants_a_list():
    # a string would otherwise be three one-character prompts
    with pytest.raises(TypeError, match=r"prompts must be a list .*got str: wrap a single prompt in a list"):
        encode_prompts("abc", TOK)
    with pytest.raises(TypeError, match=r"got Tensor: wrap a single prompt"):
        encode_prompts(torch.tensor([2, 3]), TOK)
    with pytest.raises(TypeError, match=r"prompt 0: expected a string or a 1-D integer tensor, got a 1-D torch.bool"):
        encode_prompts([torch.tensor([True, False])], TOK)
    with pytest.raises(TypeError, match=r"prompt 1: expected .* got list"):
        encode_prompts(["ab=", [2, 3]], TOK)
    ids, _ = encode_prompts(("ab=", "c="), TOK)  # a tuple is a list of prompts too
    assert ids.shape == (2, 3)
