"""CharTokenizer: round trips, and the errors on text and ids it cannot handle."""

import pytest
import torch

from fastrl.rlhf.tokenizer import CharTokenizer

TOK = CharTokenizer("abc")  # ids: 0 pad, 1 EOS, 2 'a', 3 'b', 4 'c'


def test_round_trip_drops_padding_and_eos():
    assert TOK.encode("cab") == [4, 2, 3]
    assert TOK.decode([4, 2, 3]) == "cab"
    assert TOK.decode([0, 2, 1, 0]) == "a"  # hand-worked: only id 2 is a character
    assert TOK.decode(torch.tensor([3, 3, 1])) == "bb"
    assert TOK.decode([]) == ""


@pytest.mark.parametrize(("ids", "message"), [
    ([2, 999], r"ids\[1\] = 999 is not a token id of this tokenizer \(ids are 0 to 4\)"),
    ([5], r"ids\[0\] = 5 is not a token id"),
    ([-1, 2], r"ids\[0\] = -1 is not a token id"),  # silently dropped before
    (torch.tensor([2, 7]), r"ids\[1\] = 7 is not a token id"),
])  # fmt: skip
def test_decode_rejects_unknown_ids(ids, message):
    with pytest.raises(ValueError, match=message):
        TOK.decode(ids)


@pytest.mark.parametrize(("ids", "message"), [
    ([2.0], r"ids\[0\] must be an int, got float"),
    ([True], r"ids\[0\] must be an int, got bool"),
    (torch.tensor([[2, 3]]), r"ids must be a 1-D integer tensor, got a 2-D torch.int64 tensor"),
    (torch.tensor([2.0]), r"ids must be a 1-D integer tensor, got a 1-D torch.float32 tensor"),
])  # fmt: skip
def test_decode_rejects_ids_that_are_not_ints(ids, message):
    with pytest.raises(TypeError, match=message):
        TOK.decode(ids)


def test_encode_and_construction_errors():
    with pytest.raises(ValueError, match=r"character 'z' in 'az' is not in the alphabet"):
        TOK.encode("az")
    with pytest.raises(TypeError, match=r"text must be a string, got list"):
        TOK.encode(["a"])
    with pytest.raises(ValueError, match=r"alphabet has repeated characters"):
        CharTokenizer("aba")
    with pytest.raises(ValueError, match=r"alphabet must be a non-empty string"):
        CharTokenizer("")
